"""TensorBoard backend of tb-viz: a data-provider-only plugin serving the ``tb_viz`` tab.

Registered through the ``tensorboard_plugins`` entry point. Torch-free: importing this module
must not slow TensorBoard's start-up. The routes are documented in ``HTTP_API.md``; they parse
and check their query parameters and leave the reading to :class:`tb_viz_plugin.reader.Reader`.
Every malformed request answers 4xx with a message (``errors.InvalidArgumentError`` = 400,
``errors.NotFoundError`` = 404), on both of TensorBoard's loaders.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any, Dict, Mapping, Optional
from urllib.parse import parse_qs

from werkzeug import wrappers

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin

from tb_viz_plugin import fast_crc, summary
from tb_viz_plugin.reader import Reader

DEFAULT_SAMPLES = 10
"""Steps per tag served when ``--samples_per_plugin`` does not name ``tb_viz`` (TensorBoard's default)."""

MAX_PARAM_LENGTH = 4096
"""Longest accepted query parameter (run and tag names are far shorter)."""

BLOB_CACHE_SECONDS = 3600
"""Browser cache lifetime of an image: ``(run, tag, step, index)`` names the same bytes for good."""

_ALL_SAMPLES = 2**31 - 1
_INT_RE = re.compile(r"^[0-9]{1,18}$")
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}
_STATIC_ROUTE = "/static/"


def static_dir() -> str:
    """The folder holding the frontend: ``static/`` inside an installed wheel, else ``../frontend``."""
    here = os.path.dirname(os.path.abspath(__file__))
    packaged = os.path.join(here, "static")
    if os.path.isfile(os.path.join(packaged, "index.js")):
        return packaged
    return os.path.join(os.path.dirname(here), "frontend")


def _samples_from_hints(hints: Optional[Mapping[str, int]]) -> int:
    """``--samples_per_plugin tb_viz=N`` as given: ``N``, 0 for every step, 10 when absent."""
    value = (hints or {}).get(summary.PLUGIN_NAME, DEFAULT_SAMPLES)
    return max(int(value), 0)


def _downsample_from_hints(hints: Optional[Mapping[str, int]]) -> int:
    value = _samples_from_hints(hints)
    # TensorBoard's convention: 0 means "keep everything"; passing 0 to a provider returns nothing.
    return _ALL_SAMPLES if value == 0 else value


class TbVizPlugin(base_plugin.TBPlugin):
    """Serves tb-viz summaries and the runs' scalar curves to the frontend in ``frontend/``."""

    plugin_name = summary.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self._samples = _samples_from_hints(context.sampling_hints)
        self._reader = Reader(context.data_provider, _downsample_from_hints(context.sampling_hints))
        self._static_root = os.path.realpath(static_dir())
        fast_crc.install_reader()  # TensorBoard's Python loader verifies records in C (see tb_viz_plugin.fast_crc)

    def get_plugin_apps(self) -> Dict[str, Any]:
        return {
            "/tags": self._serve_tags,
            "/items": self._serve_items,
            "/blob": self._serve_blob,
            "/scalars": self._serve_scalars,
            _STATIC_ROUTE + "*": self._serve_static,
        }

    def is_active(self) -> bool:
        # The tab is enabled through data_plugin_names(); this fallback is never needed.
        return False

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path=_STATIC_ROUTE + "index.js", tab_name="CNN viz")

    # ----------------------------------------------------------------------------- impls

    def tags_impl(self, ctx: Any, experiment_id: str) -> Dict[str, Dict[str, dict]]:
        """``{run: {tag: {kind, version, description, steps}}}`` for every readable tb-viz tag."""
        return self._reader.tags(ctx, experiment_id)

    def listing_impl(self, ctx: Any, experiment_id: str) -> dict:
        """The ``/tags`` answer: tb-viz tags per run, those runs' scalar tags, the sampling limit."""
        runs = self.tags_impl(ctx, experiment_id)
        return {
            "runs": runs,
            "scalars": self._reader.scalar_tags(ctx, experiment_id, sorted(runs)),
            "samples_per_tag": self._samples or None,
        }

    def items_impl(self, ctx: Any, experiment_id: str, run: str, tag: str, step: Optional[int]) -> dict:
        """One tag's manifest and image references at ``step`` (the latest when ``None``).

        Raises:
            errors.NotFoundError: unknown run, tag or step (see ``Reader.items``).
        """
        return self._reader.items(ctx, experiment_id, run, tag, step)

    def blob_impl(self, ctx: Any, url: str, experiment_id: str = "") -> bytes:
        """The image bytes behind an item ``url`` of an ``items_impl`` answer (``blob?run=..``).

        Raises:
            errors.InvalidArgumentError, errors.NotFoundError: as the ``/blob`` route.

        Example:
            >>> item = plugin.items_impl(ctx, "", "run_a", "filters/conv1", 0)["items"][0]  # doctest: +SKIP
            >>> plugin.blob_impl(ctx, item["url"])[:4]  # doctest: +SKIP
            b'\\x89PNG'
        """
        query = url.split("?", 1)[1] if "?" in url else url
        args = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            step, index = int(args["step"]), int(args["index"])
            run, tag = args["run"], args["tag"]
        except (KeyError, ValueError) as err:
            raise errors.InvalidArgumentError("not an item URL of /items: %r (%s)" % (url, err))
        return self._reader.blob(ctx, experiment_id, run, tag, step, index)[0]

    # ----------------------------------------------------------------------------- routes

    @wrappers.Request.application
    def _serve_tags(self, request: wrappers.Request) -> wrappers.Response:
        ctx = plugin_util.context(request.environ)
        experiment_id = plugin_util.experiment_id(request.environ)
        return http_util.Respond(request, self.listing_impl(ctx, experiment_id), "application/json")

    @wrappers.Request.application
    def _serve_items(self, request: wrappers.Request) -> wrappers.Response:
        run = _string_arg(request, "run")
        tag = _string_arg(request, "tag")
        step = _int_arg(request, "step", required=False)
        ctx = plugin_util.context(request.environ)
        experiment_id = plugin_util.experiment_id(request.environ)
        return http_util.Respond(request, self.items_impl(ctx, experiment_id, run, tag, step), "application/json")

    @wrappers.Request.application
    def _serve_blob(self, request: wrappers.Request) -> wrappers.Response:
        if "key" in request.args:
            raise errors.InvalidArgumentError(
                "/blob takes no blob key: use the URL /items hands out (run, tag, step, index)"
            )
        run = _string_arg(request, "run")
        tag = _string_arg(request, "tag")
        step = _int_arg(request, "step")
        index = _int_arg(request, "index")
        ctx = plugin_util.context(request.environ)
        experiment_id = plugin_util.experiment_id(request.environ)
        data, mime = self._reader.blob(ctx, experiment_id, run, tag, step, index)
        return http_util.Respond(request, data, mime, expires=BLOB_CACHE_SECONDS)

    @wrappers.Request.application
    def _serve_scalars(self, request: wrappers.Request) -> wrappers.Response:
        tag = _string_arg(request, "tag")
        run = _string_arg(request, "run", required=False)
        ctx = plugin_util.context(request.environ)
        experiment_id = plugin_util.experiment_id(request.environ)
        return http_util.Respond(request, self._reader.scalars(ctx, experiment_id, tag, run), "application/json")

    @wrappers.Request.application
    def _serve_static(self, request: wrappers.Request) -> wrappers.Response:
        path = request.path
        marker = "/" + summary.PLUGIN_NAME + _STATIC_ROUTE
        index = path.rfind(marker)
        relative = path[index + len(marker) :] if index >= 0 else ""
        full = self._static_file(relative)
        if full is None:
            raise errors.NotFoundError("no static file %r" % (relative,))
        with open(full, "rb") as f:
            content = f.read()
        return http_util.Respond(request, content, _STATIC_TYPES[os.path.splitext(full)[1]])

    def _static_file(self, relative: str) -> Optional[str]:
        """The real path of a servable static file, or ``None`` for traversal and unknown files."""
        if not relative or "\\" in relative or "\x00" in relative or relative.startswith("/"):
            return None
        normal = posixpath.normpath(relative)
        if normal.startswith("..") or os.path.splitext(normal)[1] not in _STATIC_TYPES:
            return None
        full = os.path.realpath(os.path.join(self._static_root, normal))
        if not full.startswith(self._static_root + os.sep) or not os.path.isfile(full):
            return None
        return full


def _string_arg(request: wrappers.Request, name: str, required: bool = True) -> Optional[str]:
    """Query parameter ``name``: given at most once, non-empty, at most ``MAX_PARAM_LENGTH`` long.

    Raises:
        errors.InvalidArgumentError: missing (when ``required``), repeated, empty or too long.
    """
    values = request.args.getlist(name)
    if not values:
        if required:
            raise errors.InvalidArgumentError("missing query parameter %r" % (name,))
        return None
    if len(values) > 1:
        raise errors.InvalidArgumentError("query parameter %r given %d times" % (name, len(values)))
    value = values[0]
    if value == "":
        raise errors.InvalidArgumentError("query parameter %r is empty" % (name,))
    if len(value) > MAX_PARAM_LENGTH:
        raise errors.InvalidArgumentError(
            "query parameter %r is %d characters long (at most %d)" % (name, len(value), MAX_PARAM_LENGTH)
        )
    return value


def _int_arg(request: wrappers.Request, name: str, required: bool = True) -> Optional[int]:
    """Query parameter ``name`` as a non-negative integer (decimal digits only).

    Raises:
        errors.InvalidArgumentError: missing (when ``required``), repeated, or not a non-negative integer.
    """
    value = _string_arg(request, name, required)
    if value is None:
        return None
    if not _INT_RE.match(value):
        raise errors.InvalidArgumentError("%s must be a non-negative integer, got %r" % (name, value[:100]))
    return int(value)
