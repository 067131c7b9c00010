"""TensorBoard backend of tb-viz: a data-provider-only plugin serving the ``tb_viz`` tab.

Registered through the ``tensorboard_plugins`` entry point. Torch-free: importing this module
must not slow TensorBoard's start-up. The routes are documented in ``HTTP_API.md``.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import quote

from werkzeug import wrappers

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin

from tb_viz_plugin import summary

logger = logging.getLogger(__name__)

DEFAULT_SAMPLES = 10
"""Steps per tag served when ``--samples_per_plugin`` does not name ``tb_viz`` (TensorBoard's default)."""

_ALL_SAMPLES = 2**31 - 1
_STEP_RE = re.compile(r"^[0-9]{1,18}$")
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}
_STATIC_ROUTE = "/static/"


def static_dir() -> str:
    """The folder holding the frontend: ``static/`` inside an installed wheel, else ``../frontend``."""
    here = os.path.dirname(os.path.abspath(__file__))
    packaged = os.path.join(here, "static")
    if os.path.isfile(os.path.join(packaged, "index.js")):
        return packaged
    return os.path.join(os.path.dirname(here), "frontend")


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/octet-stream"


def _downsample_from_hints(hints: Optional[Mapping[str, int]]) -> int:
    value = (hints or {}).get(summary.PLUGIN_NAME, DEFAULT_SAMPLES)
    # TensorBoard's convention: 0 means "keep everything"; passing 0 to a provider returns nothing.
    return _ALL_SAMPLES if value == 0 else int(value)


class TbVizPlugin(base_plugin.TBPlugin):
    """Serves tb-viz summaries (filter grids and later kinds) to the frontend in ``frontend/``."""

    plugin_name = summary.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self._provider = context.data_provider
        self._downsample = _downsample_from_hints(context.sampling_hints)
        self._static_root = os.path.realpath(static_dir())
        self._warned: set = set()

    def get_plugin_apps(self) -> Dict[str, Any]:
        return {
            "/tags": self._serve_tags,
            "/items": self._serve_items,
            "/blob": self._serve_blob,
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
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment_id, plugin_name=summary.PLUGIN_NAME
        )
        contents: Dict[str, Dict[str, summary.PluginContent]] = {}
        for run, tags in listing.items():
            for tag, meta in tags.items():
                content = self._parse_content(run, tag, meta.plugin_content)
                if content is not None:
                    contents.setdefault(run, {})[tag] = content
        if not contents:
            return {}
        data = self._provider.read_blob_sequences(
            ctx,
            experiment_id=experiment_id,
            plugin_name=summary.PLUGIN_NAME,
            downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(
                runs=list(contents), tags=sorted({t for tags in contents.values() for t in tags})
            ),
        )
        result: Dict[str, Dict[str, dict]] = {}
        for run in sorted(contents):
            for tag in sorted(contents[run]):
                steps = sorted({d.step for d in data.get(run, {}).get(tag, [])})
                if not steps:
                    continue
                content = contents[run][tag]
                result.setdefault(run, {})[tag] = {
                    "kind": content.kind,
                    "version": content.version,
                    "description": content.description,
                    "steps": steps,
                }
        return result

    def items_impl(self, ctx: Any, experiment_id: str, run: str, tag: str, step: Optional[int]) -> dict:
        """One tag's manifest and image URLs at ``step`` (the latest step when ``None``).

        Raises:
            errors.NotFoundError: unknown run, tag or step.
        """
        rtf = provider.RunTagFilter(runs=[run], tags=[tag])
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment_id, plugin_name=summary.PLUGIN_NAME, run_tag_filter=rtf
        )
        if run not in listing:
            raise errors.NotFoundError("no tb_viz data for run=%r" % (run,))
        if tag not in listing[run]:
            raise errors.NotFoundError("no tb_viz tag=%r in run=%r" % (tag, run))
        content = self._parse_content(run, tag, listing[run][tag].plugin_content)
        if content is None:
            raise errors.NotFoundError(
                "run=%r, tag=%r was written with a format version this tb-viz cannot read" % (run, tag)
            )
        data = self._provider.read_blob_sequences(
            ctx,
            experiment_id=experiment_id,
            plugin_name=summary.PLUGIN_NAME,
            downsample=self._downsample,
            run_tag_filter=rtf,
        )
        series = data.get(run, {}).get(tag, [])
        if not series:
            raise errors.NotFoundError("no steps stored for run=%r, tag=%r" % (run, tag))
        if step is None:
            datum = max(series, key=lambda d: d.step)
        else:
            datum = next((d for d in series if d.step == step), None)
            if datum is None:
                raise errors.NotFoundError(
                    "no step=%d for run=%r, tag=%r (stored steps: %s)"
                    % (step, run, tag, ", ".join(str(s) for s in sorted({d.step for d in series})))
                )
        if not datum.values:
            raise errors.NotFoundError("empty event at step=%d for run=%r, tag=%r" % (datum.step, run, tag))
        try:
            manifest = summary.parse_manifest(self._provider.read_blob(ctx, blob_key=datum.values[0].blob_key))
        except summary.FormatError as err:
            raise errors.NotFoundError(
                "unreadable manifest at step=%d for run=%r, tag=%r: %s" % (datum.step, run, tag, err)
            )
        images = datum.values[1:]
        if len(images) != len(manifest["items"]):
            raise errors.NotFoundError(
                "manifest at step=%d for run=%r, tag=%r lists %d items but %d images are stored"
                % (datum.step, run, tag, len(manifest["items"]), len(images))
            )
        items: List[dict] = []
        for entry, ref in zip(manifest["items"], images):
            item = dict(entry)
            item["url"] = "blob?key=" + quote(ref.blob_key, safe="")
            items.append(item)
        return {
            "run": run,
            "tag": tag,
            "kind": content.kind,
            "step": datum.step,
            "wall_time": datum.wall_time,
            "meta": manifest["meta"],
            "items": items,
        }

    def blob_impl(self, ctx: Any, key: str) -> bytes:
        """The bytes behind ``key``.

        Raises:
            errors.InvalidArgumentError: malformed key.
            errors.NotFoundError: well-formed key naming nothing stored.
        """
        try:
            return self._provider.read_blob(ctx, blob_key=key)
        except errors.PublicError:
            raise
        except (KeyError, IndexError) as err:
            raise errors.NotFoundError("no blob for key=%r (%s)" % (key, err))
        except (ValueError, TypeError, UnicodeError) as err:  # bad base64 / JSON inside the key
            raise errors.InvalidArgumentError("malformed blob key=%r: %s" % (key, err))

    # ----------------------------------------------------------------------------- routes

    @wrappers.Request.application
    def _serve_tags(self, request: wrappers.Request) -> wrappers.Response:
        ctx = plugin_util.context(request.environ)
        experiment_id = plugin_util.experiment_id(request.environ)
        return http_util.Respond(request, {"runs": self.tags_impl(ctx, experiment_id)}, "application/json")

    @wrappers.Request.application
    def _serve_items(self, request: wrappers.Request) -> wrappers.Response:
        run = _required_arg(request, "run")
        tag = _required_arg(request, "tag")
        raw_step = request.args.get("step")
        step = None
        if raw_step is not None:
            if not _STEP_RE.match(raw_step):
                raise errors.InvalidArgumentError("step must be a non-negative integer, got %r" % (raw_step,))
            step = int(raw_step)
        ctx = plugin_util.context(request.environ)
        experiment_id = plugin_util.experiment_id(request.environ)
        return http_util.Respond(request, self.items_impl(ctx, experiment_id, run, tag, step), "application/json")

    @wrappers.Request.application
    def _serve_blob(self, request: wrappers.Request) -> wrappers.Response:
        key = _required_arg(request, "key")
        data = self.blob_impl(plugin_util.context(request.environ), key)
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        return http_util.Respond(request, data, _sniff_mime(data))

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

    def _parse_content(self, run: str, tag: str, content: bytes) -> Optional[summary.PluginContent]:
        try:
            parsed = summary.parse_plugin_content(content)
            problem = None if parsed is not None else (
                "written with an unknown format version; this tb-viz reads version %d, upgrade it"
                % summary.PROTO_VERSION
            )
        except summary.FormatError as err:
            parsed, problem = None, str(err)
        if problem and (run, tag) not in self._warned:
            self._warned.add((run, tag))
            logger.warning("tb_viz: skipping run=%r, tag=%r: %s", run, tag, problem)
        return parsed


def _required_arg(request: wrappers.Request, name: str) -> str:
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError("missing query parameter %r" % (name,))
    return value
