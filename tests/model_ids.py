"""The five seed models' ids, named once for every test module."""

from __future__ import annotations

PRO = "bytedance/seedance-1-0/pro/image-to-video"
LITE = "bytedance/seedance-1-0/lite/image-to-video"
DREAMINA = "bytedance/dreamina-3-0/pro/image-to-video"
V15 = "bytedance/seedance-v1.5-pro/image-to-video"
RUNWAY = "runwayml/runway-gen-4/turbo/image-to-video"
ALL = (PRO, LITE, DREAMINA, V15, RUNWAY)
