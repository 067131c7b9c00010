"""Reads tb-viz data through TensorBoard's data provider, validating everything it hands on.

Torch-free: the TensorBoard plugin (``plugin.py``) is a thin layer of routes over :class:`Reader`.
Client input never reaches the provider as a blob key: ``/items`` hands out references
``blob?run=..&tag=..&step=..&index=i`` and :meth:`Reader.blob` resolves them itself, by re-reading
that one tag's blob sequence (a tb-viz tag with valid plugin content), picking the stored step and
the image blob ``index >= 1`` (blob 0 is the manifest), and serving its bytes only if they are a
PNG or JPEG image. A static item's reference points at the ``blobs/<tag>`` step that stores its
image once (``summary.stored_reference``); those store tags are not listed. Another plugin's data, a manifest, or a float tensor stored under a tb-viz tag
are never served as images.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote

from tensorboard import errors
from tensorboard.data import provider

from tb_viz_plugin import summary

logger = logging.getLogger(__name__)

SCALARS_PLUGIN = "scalars"
"""Plugin name under which TensorBoard stores scalar summaries (``add_scalar``, ``self.log``)."""

SCALAR_POINTS = 1000
"""Points per scalar curve served by :meth:`Reader.scalars` (TensorBoard's own default)."""

_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))
_QUOTE_HINT = (
    " TensorBoard's Rust data server (--load_fast=true) cannot read runs or tags whose name holds a"
    ' double quote ("); start TensorBoard with --load_fast=false or rename the run.'
)


def image_mime(data: bytes) -> Optional[str]:
    """The MIME type of PNG or JPEG bytes, else ``None``.

    Example:
        >>> image_mime(b"\\x89PNG\\r\\n\\x1a\\n...")
        'image/png'
    """
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    return None


class _Series:
    """One tag's validated plugin content and its stored steps: ``step -> (wall_time, blob keys)``."""

    __slots__ = ("content", "steps", "expires", "problems")

    def __init__(self, content: summary.PluginContent, steps: Dict[int, Tuple[float, Tuple[str, ...]]],
                 expires: float) -> None:
        self.content = content
        self.steps = steps
        self.expires = expires
        self.problems: Dict[int, Optional[str]] = {}  # step -> why its manifest is unusable (None: fine)


class Reader:
    """Validated reads of tb-viz tags, items, image blobs and scalar curves.

    Args:
        data_provider: TensorBoard's ``context.data_provider`` (either loader).
        downsample: steps per tag to read (``--samples_per_plugin tb_viz=N``; a large number for all).
        cache_seconds: how long one tag's step list is reused between ``/blob`` requests (a page
            asks for many images of the same tag at once); a step not in the cached list is
            always looked up again.
        clock: monotonic time source (tests pass a fake one).

    Example:
        >>> reader = Reader(context.data_provider, downsample=10)  # doctest: +SKIP
        >>> reader.tags(ctx, experiment_id)["run_a"]["filters/conv1"]["steps"]  # doctest: +SKIP
        [0, 63, 126]
    """

    def __init__(self, data_provider: Any, downsample: int, cache_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, cache_size: int = 512) -> None:
        self._provider = data_provider
        self._downsample = downsample
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache_size = cache_size
        self._cache: "collections.OrderedDict[tuple, _Series]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self._warned: set = set()

    # ------------------------------------------------------------------ listings

    def tags(self, ctx: Any, experiment_id: str) -> Dict[str, Dict[str, dict]]:
        """``{run: {tag: {kind, version, description, steps}}}`` for every readable tb-viz tag."""
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment_id, plugin_name=summary.PLUGIN_NAME
        )
        contents: Dict[str, Dict[str, summary.PluginContent]] = {}
        for run, tags in listing.items():
            for tag, meta in tags.items():
                content = self._content(run, tag, meta.plugin_content)
                if content is not None and content.kind != summary.BLOBS_KIND:  # stores, not views
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
                if steps:
                    content = contents[run][tag]
                    result.setdefault(run, {})[tag] = {
                        "kind": content.kind,
                        "version": content.version,
                        "description": content.description,
                        "steps": steps,
                    }
        return result

    def scalar_tags(self, ctx: Any, experiment_id: str, runs: List[str]) -> Dict[str, Dict[str, int]]:
        """``{run: {scalar tag: largest step}}`` for ``runs`` (those of the tab), sorted."""
        if not runs:
            return {}
        listing = self._provider.list_scalars(
            ctx, experiment_id=experiment_id, plugin_name=SCALARS_PLUGIN,
            run_tag_filter=provider.RunTagFilter(runs=runs),
        )
        return {
            run: {tag: int(series.max_step) for tag, series in sorted(listing[run].items())}
            for run in sorted(listing) if listing[run]
        }

    # ------------------------------------------------------------------ one step

    def items(self, ctx: Any, experiment_id: str, run: str, tag: str, step: Optional[int]) -> dict:
        """One tag's manifest at ``step`` (the latest when ``None``) with an image reference per item.

        Raises:
            errors.NotFoundError: unknown run, tag or step, or stored data that is not a valid
                tb-viz step (the message says which).
            errors.InvalidArgumentError: a name the data server cannot read (see ``_QUOTE_HINT``).
        """
        series = self._series(ctx, experiment_id, run, tag, step, fresh=True)
        if step is None:
            step = max(series.steps)
        elif step not in series.steps:
            raise errors.NotFoundError(
                "no step=%d for run=%r, tag=%r (stored steps: %s)"
                % (step, run, tag, ", ".join(str(s) for s in sorted(series.steps)))
            )
        wall_time, keys = series.steps[step]
        manifest = self._manifest(ctx, series, run, tag, step)
        items = []
        for index, entry in enumerate(manifest["items"], start=1):
            item = dict(entry)
            where = summary.stored_reference(entry) or (tag, step, index)  # a static image: stored once elsewhere
            item.pop("stored", None)
            item["url"] = "blob?run=%s&tag=%s&step=%d&index=%d" % (quote(run, safe=""), quote(where[0], safe=""),
                                                                    where[1], where[2])  # fmt: skip
            items.append(item)
        return {
            "run": run,
            "tag": tag,
            "kind": series.content.kind,
            "step": step,
            "wall_time": wall_time,
            "meta": manifest["meta"],
            "items": items,
        }

    def blob(self, ctx: Any, experiment_id: str, run: str, tag: str, step: int, index: int) -> Tuple[bytes, str]:
        """The image bytes and MIME type of item ``index`` (1-based) of a tb-viz tag's ``step``.

        Raises:
            errors.InvalidArgumentError: ``index < 1`` (blob 0 is the manifest, never an image).
            errors.NotFoundError: no such tb-viz run, tag, step or item, or stored bytes that are
                not a PNG or JPEG image.
        """
        if index < 1:
            raise errors.InvalidArgumentError("index must be >= 1 (as in the URLs /items hands out), got %d" % index)
        series = self._series(ctx, experiment_id, run, tag, step, fresh=False)
        if step not in series.steps:
            raise errors.NotFoundError("no step=%d for run=%r, tag=%r" % (step, run, tag))
        keys = series.steps[step][1]
        if step not in series.problems:
            self._manifest(ctx, series, run, tag, step)  # raises for an unusable step
        elif series.problems[step] is not None:
            raise errors.NotFoundError(series.problems[step])
        if index >= len(keys):
            raise errors.NotFoundError(
                "no item %d at step=%d of run=%r, tag=%r (%d items)" % (index, step, run, tag, max(len(keys) - 1, 0))
            )
        data = self._read_blob(ctx, keys[index], run, tag)
        mime = image_mime(data) if isinstance(data, bytes) else None
        if mime is None:
            raise errors.NotFoundError(
                "item %d at step=%d of run=%r, tag=%r is not a PNG or JPEG image" % (index, step, run, tag)
            )
        return bytes(data), mime

    # ------------------------------------------------------------------ scalars

    def scalars(self, ctx: Any, experiment_id: str, tag: str, run: Optional[str] = None) -> dict:
        """One scalar tag's curve in every run that has it (or in ``run``), downsampled.

        Non-finite values are ``None``.

        Raises:
            errors.NotFoundError: no run has a scalar ``tag``.
        """
        rtf = provider.RunTagFilter(runs=None if run is None else [run], tags=[tag])
        data = self._provider.read_scalars(
            ctx, experiment_id=experiment_id, plugin_name=SCALARS_PLUGIN, downsample=SCALAR_POINTS,
            run_tag_filter=rtf,
        )
        series = []
        for name in sorted(data):
            points = data[name].get(tag)
            if points:
                series.append({
                    "run": name,
                    "steps": [int(p.step) for p in points],
                    "values": [float(p.value) if math.isfinite(p.value) else None for p in points],
                })
        if not series:
            where = "" if run is None else " in run=%r" % (run,)
            raise errors.NotFoundError("no scalar tag=%r%s" % (tag, where))
        return {"tag": tag, "series": series}

    # ------------------------------------------------------------------ internals

    def _series(self, ctx: Any, experiment_id: str, run: str, tag: str, step: Optional[int], fresh: bool) -> _Series:
        """The tag's content and steps, from the cache unless stale, ``fresh`` or lacking ``step``."""
        key = (experiment_id, run, tag)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and not fresh and cached.expires > now and (step is None or step in cached.steps):
            return cached
        rtf = provider.RunTagFilter(runs=[run], tags=[tag])
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment_id, plugin_name=summary.PLUGIN_NAME, run_tag_filter=rtf
        )
        if run not in listing:
            raise errors.NotFoundError("no tb_viz data for run=%r" % (run,))
        if tag not in listing[run]:
            raise errors.NotFoundError("no tb_viz tag=%r in run=%r" % (tag, run))
        content = self._content(run, tag, listing[run][tag].plugin_content)
        if content is None:
            raise errors.NotFoundError("run=%r, tag=%r is not a readable tb-viz tag (see the server log)" % (run, tag))
        data = self._provider.read_blob_sequences(
            ctx, experiment_id=experiment_id, plugin_name=summary.PLUGIN_NAME, downsample=self._downsample,
            run_tag_filter=rtf,
        )
        steps = {
            int(d.step): (float(d.wall_time), tuple(ref.blob_key for ref in d.values))
            for d in data.get(run, {}).get(tag, [])
        }
        if not steps:
            raise errors.NotFoundError("no steps stored for run=%r, tag=%r" % (run, tag))
        series = _Series(content, steps, now + self._cache_seconds)
        with self._lock:
            self._cache[key] = series
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return series

    def _manifest(self, ctx: Any, series: _Series, run: str, tag: str, step: int) -> dict:
        """The parsed manifest of a stored ``step``; records in ``series.problems`` whether it is usable.

        Raises:
            errors.NotFoundError: the step is not a valid tb-viz step (message says why).
        """
        where = "step=%d of run=%r, tag=%r" % (step, run, tag)
        keys = series.steps[step][1]
        problem = None
        manifest: dict = {}
        if not keys:
            problem = "empty event at " + where
        else:
            data = self._read_blob(ctx, keys[0], run, tag)
            if not isinstance(data, bytes):
                problem = "%s is not a tb-viz blob sequence (its tensor holds %s, not encoded bytes)" % (
                    where, type(data).__name__)
            else:
                try:
                    manifest = summary.parse_manifest(data)
                except summary.FormatError as err:
                    problem = "unreadable manifest at %s: %s" % (where, err)
                except RecursionError:
                    problem = "unreadable manifest at %s: nested too deeply" % where
        if problem is None and len(keys) - 1 != len(manifest["items"]):
            problem = "manifest at %s lists %d items but %d images are stored" % (
                where, len(manifest["items"]), len(keys) - 1)
        series.problems[step] = problem
        if problem is not None:
            raise errors.NotFoundError(problem)
        return manifest

    def _read_blob(self, ctx: Any, blob_key: str, run: str, tag: str) -> Any:
        """``read_blob`` of a key the provider itself handed out; failures become 4xx errors."""
        hint = _QUOTE_HINT if '"' in run or '"' in tag else ""
        try:
            return self._provider.read_blob(ctx, blob_key=blob_key)
        except errors.NotFoundError as err:
            raise errors.NotFoundError("blob of run=%r, tag=%r not found: %s.%s" % (run, tag, err, hint))
        except errors.PublicError as err:
            raise errors.InvalidArgumentError("blob of run=%r, tag=%r unreadable: %s.%s" % (run, tag, err, hint))
        except (KeyError, IndexError, ValueError, TypeError, RecursionError) as err:
            raise errors.NotFoundError("blob of run=%r, tag=%r unreadable: %s.%s" % (run, tag, err, hint))

    def _content(self, run: str, tag: str, content: bytes) -> Optional[summary.PluginContent]:
        """The tag's parsed plugin content, or ``None`` (warned once per tag) when unreadable."""
        try:
            parsed = summary.parse_plugin_content(content)
            problem = None if parsed is not None else (
                "written with an unknown format version; this tb-viz reads version %d, upgrade it"
                % summary.PROTO_VERSION
            )
        except summary.FormatError as err:
            parsed, problem = None, str(err)
        except RecursionError:
            parsed, problem = None, "plugin content nested too deeply"
        if problem and (run, tag) not in self._warned:
            self._warned.add((run, tag))
            logger.warning("tb_viz: skipping run=%r, tag=%r: %s", run, tag, problem)
        return parsed
