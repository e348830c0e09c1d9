"""The README's Python example runs as written (so CI runs it): the first ``python`` code
block of its "Python" section, in a fresh interpreter, against the built-in simulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def python_example(readme: str) -> str:
    """The first ```python block after the ``## Python`` heading (before the next one)."""
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's Python section has no python code block"
    return found.group(1)


def test_python_example_is_found() -> None:
    code = python_example((REPO / "README.md").read_text(encoding="utf-8"))
    assert "orchestrator.simulate()" in code
    assert "batch.run(" in code


def test_the_readmes_python_example_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(python_example((REPO / "README.md").read_text(encoding="utf-8")))
    env = {k: v for k, v in os.environ.items() if k not in ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN")}
    env["TMPDIR"] = str(tmp_path)  # the example's temporary folder lands in the test's
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("2 new job(s), estimated $"), done.stdout
    assert lines[1].startswith("2 videos in "), done.stdout
    assert lines[2].endswith("export.jsonl"), done.stdout
    assert lines[3].endswith("report.html"), done.stdout
    videos = list(tmp_path.rglob("*.mp4"))
    assert len(videos) == 2
