"""The plugin's HTTP routes through TensorBoardWSGI: good answers, and 4xx (never 500) for bad input."""

import gzip
import json
from urllib.parse import quote

import pytest

from tb_viz_plugin import reader, summary
from tb_viz_plugin.plugin import TbVizPlugin, _downsample_from_hints

from tests import hostile
from tests.helpers import make_plugin, write_filter_run
from tests.synthetic import RunWriter, write_run

BASE = "/data/plugin/tb_viz"
XSS = "<img src=x onerror=alert(1)>"


def _json(response):
    data = response.get_data()
    if response.headers.get("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    return json.loads(data)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("logs"))
    write_filter_run(logdir, "run_a", steps=[0, 5, 10], seed=0)
    write_filter_run(logdir, XSS, steps=[0, 3], seed=1)
    return make_plugin(logdir)[1]


def test_tags_lists_runs_tags_kinds_and_steps(client):
    response = client.get(BASE + "/tags")
    assert response.status_code == 200
    runs = _json(response)["runs"]
    assert runs["run_a"]["filters/0.0"]["steps"] == [0, 5, 10]
    assert runs[XSS]["filters/0.2"]["steps"] == [0, 3]
    assert runs["run_a"]["filters/0.2"]["kind"] == "filters"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_items_then_blob(client):
    response = client.get(BASE + "/items?run=run_a&tag=" + quote("filters/0.2") + "&step=5")
    assert response.status_code == 200
    body = _json(response)
    assert body["step"] == 5 and body["meta"]["layout"] == "per_channel"
    latest = _json(client.get(BASE + "/items?run=run_a&tag=filters/0.2"))
    assert latest["step"] == 10
    blob = client.get(BASE + "/" + body["items"][0]["url"])
    assert blob.status_code == 200
    assert blob.headers["Content-Type"].startswith("image/png")
    assert blob.get_data().startswith(b"\x89PNG")


def test_items_for_a_run_named_like_html(client):
    body = _json(client.get(BASE + "/items?run=" + quote(XSS) + "&tag=filters/0.0&step=3"))
    assert body["run"] == XSS and body["step"] == 3


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("hostile"))
    hostile.write_logdir(logdir)
    return make_plugin(logdir)[1]


@pytest.mark.parametrize("path,status", hostile.BAD_REQUESTS)
def test_bad_requests_get_4xx_and_never_non_image_bytes(hostile_client, path, status):
    response = hostile_client.get(BASE + path)
    body = response.get_data()
    assert response.status_code == status, (path, body[:300])
    if status >= 400:
        assert body.strip() and not reader.image_mime(body), path  # a message, not data
        assert not response.headers["Content-Type"].startswith("image/"), path
    else:
        assert response.headers["Content-Type"] in ("image/png", "image/jpeg") and reader.image_mime(body), path


@pytest.mark.parametrize("path", hostile.GOOD_REQUESTS)
def test_good_requests_beside_hostile_data(hostile_client, path):
    response = hostile_client.get(BASE + path)
    assert response.status_code == 200, (path, response.get_data()[:300])


def test_tags_lists_odd_names_and_skips_unreadable_content(hostile_client):
    body = _json(hostile_client.get(BASE + "/tags"))
    runs = body["runs"]
    assert set(runs) == {"run_a", hostile.PROTO, hostile.QUOTE, hostile.XSS}
    assert runs[hostile.PROTO]["filters/0.0"]["steps"] == [3]
    assert "filters/deepcontent" not in runs["run_a"] and "images/sample" not in runs["run_a"]
    assert body["scalars"]["run_a"] == {"loss": 10, "val_acc": 10}
    assert body["samples_per_tag"] is None  # make_plugin keeps every step


def test_items_hand_out_references_that_blob_resolves(hostile_client):
    body = _json(hostile_client.get(BASE + "/items?run=" + quote(hostile.QUOTE) + "&tag=filters/0.0"))
    (item,) = body["items"]
    assert item["url"] == "blob?run=quote%22run&tag=filters%2F0.0&step=3&index=1"
    blob = hostile_client.get(BASE + "/" + item["url"])
    assert blob.status_code == 200 and blob.get_data().startswith(b"\x89PNG")
    assert "max-age=3600" in blob.headers["Cache-Control"]


def test_scalars_route_downsamples_and_lists_runs(tmp_path):
    with RunWriter(str(tmp_path), "r1") as w:
        for step in range(3000):
            w.scalar("loss", step, 1.0 / (1 + step))
        w.scalar("loss", 3000, float("nan"))
    with RunWriter(str(tmp_path), "r2") as w:
        w.scalar("loss", 0, 2.0)
    plugin, client = make_plugin(str(tmp_path))
    asked = []
    original = plugin._reader._provider.read_scalars
    plugin._reader._provider.read_scalars = lambda *a, **kw: asked.append(kw["downsample"]) or original(*a, **kw)
    body = _json(client.get(BASE + "/scalars?tag=loss"))
    assert asked == [reader.SCALAR_POINTS]
    assert [s["run"] for s in body["series"]] == ["r1", "r2"]
    r1 = body["series"][0]
    assert 100 < len(r1["steps"]) == len(r1["values"]) <= reader.SCALAR_POINTS
    assert r1["steps"] == sorted(r1["steps"]) and r1["steps"][-1] == 3000
    assert r1["values"][-1] is None and all(0 < v <= 1 for v in r1["values"][:-1])  # NaN travels as null
    only = _json(client.get(BASE + "/scalars?tag=loss&run=r2"))
    assert only["series"] == [{"run": "r2", "steps": [0], "values": [2.0]}]


def test_blob_reads_are_cached_per_tag(tmp_path):
    write_run(str(tmp_path), "r", [0, 1], items=3)
    plugin, client = make_plugin(str(tmp_path))
    calls = []
    original = plugin._reader._provider.read_blob_sequences

    def counting(*args, **kwargs):
        calls.append(kwargs.get("run_tag_filter"))
        return original(*args, **kwargs)

    plugin._reader._provider.read_blob_sequences = counting
    items = _json(client.get(BASE + "/items?run=r&tag=filters/conv1&step=1"))["items"]
    for item in items * 2:
        assert client.get(BASE + "/" + item["url"]).status_code == 200
    assert len(calls) == 1  # /items read the tag once; six image requests reused it


STATIC = [
    ("/static/index.js", 200),
    ("/static/", 404),
    ("/static/../plugin.py", 404),
    ("/static/..%2fplugin.py", 404),
    ("/static/%2e%2e/%2e%2e/setup.py", 404),
    ("/static/..%5c..%5csetup.py", 404),
    ("/static//etc/passwd", 404),
    ("/static/%2fetc%2fpasswd", 404),
    ("/static/nope.js", 404),
    ("/static/index.js%00.css", 404),
    ("/static/../../../../../../etc/passwd", 404),
]


@pytest.mark.parametrize("path,status", STATIC)
def test_static_route_refuses_traversal(client, path, status):
    response = client.get(BASE + path)
    assert response.status_code == status, path
    if status == 200:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert b"export" in response.get_data()


def test_frontend_metadata_and_sampling_hints():
    assert TbVizPlugin.plugin_name == summary.PLUGIN_NAME == "tb_viz"
    assert _downsample_from_hints({}) == 10
    assert _downsample_from_hints({"tb_viz": 3}) == 3
    assert _downsample_from_hints({"tb_viz": 0}) > 10**6
    assert _downsample_from_hints({"images": 0}) == 10


def test_samples_per_plugin_is_honoured(tmp_path):
    write_filter_run(str(tmp_path), "r", steps=range(0, 30, 2))
    _, all_client = make_plugin(str(tmp_path), {"tb_viz": 0})
    assert len(_json(all_client.get(BASE + "/tags"))["runs"]["r"]["filters/0.0"]["steps"]) == 15
    _, few_client = make_plugin(str(tmp_path), {"tb_viz": 4})
    steps = _json(few_client.get(BASE + "/tags"))["runs"]["r"]["filters/0.0"]["steps"]
    assert len(steps) == 4 and steps[-1] == 28  # the latest step is always kept
