"""Prices: the catalog's list prices, a user's price table, and cost estimates."""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING

import pytest
from model_ids import DREAMINA, PRO, RUNWAY

from orchestrator.catalog import Catalog, PriceTable, builtin_catalog
from orchestrator.catalog.parse import parse_model
from orchestrator.catalog.pricing import load_price_file
from orchestrator.catalog.spec import Price
from orchestrator.problems import InputError

if TYPE_CHECKING:
    from pathlib import Path


def write(tmp_path: Path, text: str, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_the_seed_models_have_no_list_price() -> None:
    table = PriceTable.from_catalog(builtin_catalog())
    assert table.prices == {}
    assert table.estimate(builtin_catalog().require(PRO), {"duration": 5}) is None


def test_from_catalog_takes_the_prices_catalog_files_give() -> None:
    priced = parse_model(
        {"model_id": "a/b", "base_price_usd": 0.2, "input_schema": {"properties": {}}}
    )
    table = PriceTable.from_catalog(Catalog([priced]))
    assert table.price("a/b") == Price(0.2, "second")
    assert table.price("c/d") is None


def test_load_price_file_reads_numbers_and_mappings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        # USD per second unless "per" says otherwise
        {PRO}: 0.12
        {RUNWAY}: {{usd: 0.05, per: second}}
        {DREAMINA}: {{usd: 1, per: output}}
        """,
    )
    prices = load_price_file(path)
    assert prices == {
        PRO: Price(0.12, "second", "from prices.yaml"),
        RUNWAY: Price(0.05, "second", "from prices.yaml"),
        DREAMINA: Price(1.0, "output", "from prices.yaml"),
    }


def test_load_price_file_reads_json_too(tmp_path: Path) -> None:
    path = write(tmp_path, f'{{"{PRO}": 0.1}}', "prices.json")
    assert load_price_file(path) == {PRO: Price(0.1, "second", "from prices.json")}


def test_load_price_file_reports_every_bad_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        {PRO}: -0.1
        {RUNWAY}: {{usd: 0.05, per: minute}}
        {DREAMINA}: cheap
        acme/free: {{per: second}}
        acme/yes: true
        """,
    )
    with pytest.raises(InputError) as caught:
        load_price_file(path)
    problems = caught.value.problems
    assert [(p.file, p.field) for p in problems] == [
        (str(path), PRO),
        (str(path), RUNWAY),
        (str(path), DREAMINA),
        (str(path), "acme/free"),
        (str(path), "acme/yes"),
    ]
    assert problems[0].message == "price must be a number of USD >= 0, got -0.1"
    assert problems[1].message == "unknown price unit 'minute'; allowed: second, output"
    assert problems[2].message == "price must be a number of USD >= 0, got 'cheap'"
    assert problems[3].message == "price must be a number of USD >= 0, got None"
    assert problems[4].message == "price must be a number of USD >= 0, got True"
    assert str(problems[1]).startswith(f"{path}: field {RUNWAY!r}: unknown price unit")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("- 1\n- 2\n", "maps model ids to prices", id="a-list"),
        pytest.param("a: [1\n", "malformed YAML", id="malformed"),
        pytest.param("", "maps model ids to prices", id="empty"),
    ],
)
def test_load_price_file_refuses_what_is_not_a_table(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_price_file(path)
    [problem] = caught.value.problems
    assert problem.file == str(path)
    assert words in problem.message


def test_load_price_file_that_is_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_price_file(tmp_path / "nope.yaml")
    [problem] = caught.value.problems
    assert problem.message.startswith("cannot read price table")


def table() -> PriceTable:
    return PriceTable(
        {
            PRO: Price(0.1),
            DREAMINA: Price(0.2),
            RUNWAY: Price(0.05),
            "acme/flat": Price(0.7, "output"),
        }
    )


@pytest.mark.parametrize(
    ("model_id", "payload", "usd"),
    [
        pytest.param(PRO, {"duration": 10}, 1.0, id="seconds-set"),
        pytest.param(PRO, {}, 0.5, id="schema-default-5s"),
        pytest.param(DREAMINA, {"frames": 241}, 2.0, id="frames-241-is-10s"),
        pytest.param(DREAMINA, {}, 1.0, id="frames-default-121-is-5s"),
        pytest.param(RUNWAY, {"duration": 10}, 0.5, id="runway"),
    ],
)
def test_estimate_per_second(model_id: str, payload: dict[str, object], usd: float) -> None:
    assert table().estimate(builtin_catalog().require(model_id), payload) == pytest.approx(usd)


def test_estimate_per_output_ignores_the_duration() -> None:
    flat = parse_model({"model_id": "acme/flat", "input_schema": {"properties": {}}})
    assert table().estimate(flat, {"duration": 10}) == 0.7


def test_estimate_is_none_when_price_duration_or_model_is_unknown() -> None:
    lite = builtin_catalog().require("bytedance/seedance-1-0/lite/image-to-video")
    assert table().estimate(lite, {"duration": 5}) is None  # no price for Lite
    assert table().estimate(None, {"duration": 5}) is None  # model without schema
    no_duration = parse_model({"model_id": "acme/x", "input_schema": {"properties": {}}})
    assert PriceTable({"acme/x": Price(1.0)}).estimate(no_duration, {}) is None
    assert table().estimate(builtin_catalog().require(DREAMINA), {"frames": 7}) is None


def test_merged_overrides_without_changing_the_original() -> None:
    base = PriceTable({PRO: Price(0.1)})
    merged = base.merged({PRO: Price(0.3), RUNWAY: Price(0.05)})
    assert merged.price(PRO) == Price(0.3)
    assert merged.price(RUNWAY) == Price(0.05)
    assert base.price(PRO) == Price(0.1)
    assert base.price(RUNWAY) is None


@pytest.mark.parametrize("value", [".nan", ".inf", "-1"], ids=["nan", "inf", "negative"])
def test_load_price_file_refuses_non_finite_prices(tmp_path: Path, value: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(f"acme/model: {value}\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_price_file(path)
    [problem] = caught.value.problems
    assert problem.field == "acme/model"
    assert "number of USD >= 0" in problem.message


def test_a_price_table_is_held_to_the_manifests_bounds(tmp_path: Path) -> None:
    fifo = tmp_path / "prices.fifo"
    os.mkfifo(fifo)
    bomb = tmp_path / "bomb.yaml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
              for p, c in zip("abcdefgh", "bcdefghi", strict=True)]  # fmt: skip
    bomb.write_text("\n".join(lines) + "\n", encoding="utf-8")
    big = tmp_path / "big.yaml"
    big.write_text("x: 1\n" * 300_000, encoding="utf-8")
    for path, words in ((fifo, "not a regular file"), (bomb, "alias"), (big, "more than")):
        with pytest.raises(InputError) as caught:  # never a hang, a MemoryError or a traceback
            load_price_file(path)
        [problem] = caught.value.problems
        assert words in problem.message, problem.message
