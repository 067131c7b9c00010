"""A log directory and a table of requests that a hostile or broken client could send.

Shared by ``test_plugin_routes.py`` (in-process, Python loader) and ``test_server.py`` (a real
TensorBoard on both loaders): every request of ``BAD_REQUESTS`` must answer 4xx with a message,
and no ``/blob`` answer may carry bytes that are not a tb-viz image.
"""

from __future__ import annotations

import base64
import json
from typing import List, Tuple
from urllib.parse import quote

from tensorboard.util import tensor_util
from tensorboard.compat.proto import types_pb2

from tb_viz_plugin import summary

from tests.synthetic import RunWriter, filter_items, tiny_png

PROTO = "__proto__"
QUOTE = 'quote"run'
XSS = "<img src=x onerror=alert(1)>"
DEEP = 100_000


def write_logdir(logdir: str) -> None:
    """Good tb-viz data beside other plugins' data and malformed tb-viz tags.

    - ``run_a``: ``filters/0.0`` at steps 0, 5, 10 (two PNG items each), scalars ``loss`` and
      ``val_acc``, an image of TensorBoard's images plugin (``images/sample``), and broken tags:
      ``filters/float`` (float tensor), ``filters/text`` (an item that is not an image),
      ``filters/deep`` (a manifest nested 100k deep), ``filters/deepcontent`` (plugin content nested
      100k deep: left out of ``/tags``).
    - runs named ``__proto__``, ``quote"run`` and like HTML, each with ``filters/0.0`` at step 3.
    """
    with RunWriter(logdir, "run_a") as w:
        for step in (0, 5, 10):
            w.tb_viz("filters/0.0", "filters", step, filter_items(step, 2))
            w.scalar("loss", step, 1.0 / (1 + step))
            w.scalar("val_acc", step, step / 10)
        w.image_plugin("images/sample", 0, tiny_png(8, 8))
        w.float_tb_viz("filters/float", 0)
        manifest = summary.create_manifest([summary.Item(b"", caption="text")])
        strings = tensor_util.make_tensor_proto([manifest, b"plain text, not an image"], dtype=types_pb2.DT_STRING, shape=[2])
        w.raw("filters/text", 0, summary.PLUGIN_NAME, summary.create_plugin_content("filters"), strings)
        deep = tensor_util.make_tensor_proto([b"[" * DEEP + b"]" * DEEP, tiny_png(4, 4)], dtype=types_pb2.DT_STRING, shape=[2])
        w.raw("filters/deep", 0, summary.PLUGIN_NAME, summary.create_plugin_content("filters"), deep)
        w.raw("filters/deepcontent", 0, summary.PLUGIN_NAME, b"[" * DEEP + b"]" * DEEP, deep)
    for run in (PROTO, QUOTE, XSS):
        with RunWriter(logdir, run) as w:
            w.tb_viz("filters/0.0", "filters", 3, filter_items(3, 1))
            w.scalar("loss", 3, 0.5)


def _key(obj) -> str:
    return quote(base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("="))


def _blob(run="run_a", tag="filters/0.0", step="5", index="1") -> str:
    parts = [(k, v) for k, v in (("run", run), ("tag", tag), ("step", step), ("index", index)) if v is not None]
    return "/blob?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in parts)


_DEEP_KEY = quote(base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("="))

BAD_REQUESTS: List[Tuple[str, int]] = [
    # /items: parameters
    ("/items", 400),
    ("/items?run=run_a", 400),
    ("/items?tag=filters/0.0", 400),
    ("/items?run=&tag=filters/0.0", 400),
    ("/items?run=run_a&run=run_b&tag=filters/0.0", 400),
    ("/items?run=" + "r" * 5000 + "&tag=filters/0.0", 400),
    ("/items?run=run_a&tag=filters/0.0&step=abc", 400),
    ("/items?run=run_a&tag=filters/0.0&step=-1", 400),
    ("/items?run=run_a&tag=filters/0.0&step=1.5", 400),
    ("/items?run=run_a&tag=filters/0.0&step=null", 400),
    ("/items?run=run_a&tag=filters/0.0&step=%5B5%5D", 400),
    ("/items?run=run_a&tag=filters/0.0&step=99999999999999999999999", 400),
    # /items: names of nothing tb-viz
    ("/items?run=nope&tag=filters/0.0", 404),
    ("/items?run=run_a&tag=filters/nope", 404),
    ("/items?run=run_a&tag=filters/0.0&step=4", 404),
    ("/items?run=run_a&tag=images/sample", 404),  # another plugin's tag
    ("/items?run=run_a&tag=loss", 404),  # a scalar
    ("/items?run=run_a&tag=filters/float", 404),  # float tensor under a tb-viz tag
    ("/items?run=run_a&tag=filters/deep", 404),  # manifest nested 100k deep
    ("/items?run=run_a&tag=filters/deepcontent", 404),
    ("/items?run=" + quote(PROTO) + "&tag=" + quote(PROTO), 404),
    # /blob: client-supplied blob keys are never accepted
    ("/blob", 400),
    ("/blob?key=", 400),
    ("/blob?key=%%%", 400),
    ("/blob?key=" + _DEEP_KEY, 400),  # nested JSON key (RecursionError once)
    ("/blob?key=" + _key(["", "tb_viz", "run_a", "filters/0.0", 5, None]), 400),  # null index (raw pointers once)
    ("/blob?key=" + _key(["", "images", "run_a", "images/sample", 0, 2]), 400),  # the images plugin's PNG
    (_blob() + "&key=" + _key(["", "tb_viz", "run_a", "filters/0.0", 5, 1]), 400),
    # /blob: malformed references
    (_blob(run=None), 400),
    (_blob(tag=None), 400),
    (_blob(step=None), 400),
    (_blob(index=None), 400),
    (_blob(run=""), 400),
    (_blob(index="0"), 400),  # the manifest, never an image
    (_blob(index="null"), 400),
    (_blob(index="true"), 400),
    (_blob(index="[1]"), 400),
    (_blob(index="1.0"), 400),
    (_blob(index="-1"), 400),
    (_blob(index="１"), 400),  # a full-width digit
    (_blob(step="null"), 400),
    (_blob(step="5e0"), 400),
    (_blob() + "&index=2", 400),  # repeated
    # /blob: well-formed references to nothing servable
    (_blob(index="3"), 404),  # two items per step
    (_blob(step="4"), 404),
    (_blob(run="nope"), 404),
    (_blob(run="run_a", tag="images/sample", step="0", index="2"), 404),  # another plugin's PNG
    (_blob(run="run_a", tag="images/sample", step="0", index="0"), 400),
    (_blob(run="run_a", tag="loss", step="5", index="1"), 404),
    (_blob(run="run_a", tag="filters/float", step="0", index="1"), 404),
    (_blob(run="run_a", tag="filters/float", step="0", index="2"), 404),
    (_blob(run="run_a", tag="filters/text", step="0", index="1"), 404),  # stored bytes are not an image
    (_blob(run="run_a", tag="filters/deep", step="0", index="1"), 404),  # an image, but /items lists none
    (_blob(run=PROTO, tag="constructor", step="3", index="1"), 404),
    # /scalars
    ("/scalars", 400),
    ("/scalars?tag=", 400),
    ("/scalars?tag=loss&tag=val_acc", 400),
    ("/scalars?tag=nope", 404),
    ("/scalars?tag=loss&run=nope", 404),
    ("/scalars?tag=filters/0.0", 404),  # a tb-viz tag is not a scalar
    ("/scalars?tag=images/sample", 404),
    # elsewhere
    ("/nope", 404),
]
"""``(path under /data/plugin/tb_viz, expected status)``; every 200 here must be an image."""

GOOD_REQUESTS: List[str] = [
    "/tags",
    "/items?run=run_a&tag=filters/0.0",
    "/items?run=run_a&tag=filters/0.0&step=5",
    "/items?run=" + quote(PROTO) + "&tag=filters/0.0",
    "/items?run=" + quote(XSS) + "&tag=filters/0.0&step=3",
    _blob(),
    _blob(index="2"),
    _blob(run=PROTO, step="3"),
    "/scalars?tag=loss",
    "/scalars?tag=val_acc&run=run_a",
]
"""Requests that answer 200 on both loaders."""
