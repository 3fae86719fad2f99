import json

import pytest

import application


@pytest.fixture
def client(tmp_path):
    store = tmp_path / "urls.json"
    store.write_text(json.dumps({"seeded": "https://example.org/seeded"}))
    application.app.config.update(TESTING=True, URLS_FILE=str(store))
    return application.app.test_client()


def test_shorten_then_follow_redirects_to_the_url(client):
    r = client.post("/shorten", data={"url": "https://example.com/a/long/path", "code": "abc"})
    assert r.status_code == 201
    assert r.get_json()["code"] == "abc"
    follow = client.get("/abc")
    assert follow.status_code == 302
    assert follow.headers["Location"] == "https://example.com/a/long/path"


def test_existing_links_still_redirect(client):
    r = client.get("/seeded")
    assert r.status_code == 302
    assert r.headers["Location"] == "https://example.org/seeded"


def test_shorten_accepts_json_and_makes_a_code(client):
    r = client.post("/shorten", json={"url": "https://example.com/x"})
    assert r.status_code == 201
    code = r.get_json()["code"]
    assert len(code) == 6
    assert client.get("/" + code).headers["Location"] == "https://example.com/x"


def test_invalid_url_is_rejected(client):
    r = client.post("/shorten", data={"url": "javascript:alert(1)"})
    assert r.status_code == 400


def test_taken_code_is_a_conflict(client):
    assert client.post("/shorten", data={"url": "https://a.example", "code": "dup"}).status_code == 201
    assert client.post("/shorten", data={"url": "https://b.example", "code": "dup"}).status_code == 409


def test_unknown_code_is_404(client):
    assert client.get("/nope").status_code == 404


def test_health_and_version(client):
    assert client.get("/health").status_code == 200
    assert client.get("/version").get_json() == {"version": application.VERSION}


def test_make_code_uses_the_code_alphabet():
    code = application.make_code(12)
    assert len(code) == 12
    assert all(c in application.CODE_CHARS for c in code)


def test_metrics_count_requests_by_version_and_status(client):
    client.get("/health")
    client.post("/shorten", data={"url": "not-a-url"})
    client.get("/no/such/page")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{status="400",version="dev"}' in text
    assert 'http_requests_total{status="404",version="dev"}' in text
    assert 'http_requests_total{status="200",version="dev"}' not in text, "probes are not users"
    assert "http_request_duration_seconds_bucket" in text

