"""The plugin's HTTP routes through TensorBoardWSGI: good answers, and 4xx (never 500) for bad input."""

import gzip
import json
from urllib.parse import quote

import pytest

from tb_viz_plugin import summary
from tb_viz_plugin.plugin import TbVizPlugin, _downsample_from_hints

from tests.helpers import make_plugin, write_filter_run

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


BAD_REQUESTS = [
    ("/items", 400),
    ("/items?run=run_a", 400),
    ("/items?tag=filters/0.0", 400),
    ("/items?run=&tag=filters/0.0", 400),
    ("/items?run=run_a&tag=filters/0.0&step=abc", 400),
    ("/items?run=run_a&tag=filters/0.0&step=-1", 400),
    ("/items?run=run_a&tag=filters/0.0&step=1.5", 400),
    ("/items?run=run_a&tag=filters/0.0&step=99999999999999999999999", 400),
    ("/items?run=nope&tag=filters/0.0", 404),
    ("/items?run=run_a&tag=filters/nope", 404),
    ("/items?run=run_a&tag=filters/0.0&step=4", 404),
    ("/blob", 400),
    ("/blob?key=", 400),
    ("/blob?key=%%%", 400),
    ("/blob?key=not-base64!", 400),
    ("/blob?key=" + quote("eyJub3QiOiAiYSBsaXN0In0"), 400),  # base64 of a JSON object, not a key
    ("/nope", 404),
]


@pytest.mark.parametrize("path,status", BAD_REQUESTS)
def test_bad_requests_get_4xx(client, path, status):
    response = client.get(BASE + path)
    assert response.status_code == status, (path, response.get_data()[:300])


def test_well_formed_key_to_missing_blob_is_404(client):
    body = _json(client.get(BASE + "/items?run=run_a&tag=filters/0.0&step=5"))
    key = body["items"][0]["url"].split("key=")[1]
    from urllib.parse import unquote
    import base64

    raw = json.loads(base64.urlsafe_b64decode(unquote(key) + "==="))
    for field, value in ((4, 4), (5, 9), (2, "ghost")):  # step not stored, index out of range, no run
        forged = list(raw)
        forged[field] = value
        forged_key = base64.urlsafe_b64encode(json.dumps(forged, separators=(",", ":")).encode()).decode().rstrip("=")
        response = client.get(BASE + "/blob?key=" + quote(forged_key))
        assert response.status_code == 404, (forged, response.get_data()[:200])


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
