"""The request log's URL: put together from the request's parts, as werkzeug reads it."""

from __future__ import annotations

import pytest
from flask import Flask, request

from ion.entrypoints.http.request_log import request_url

APP = Flask("request-log-test")


@pytest.mark.parametrize(
    ("path", "base"),
    [
        ("/v1/chat", "http://localhost/"),
        ("/v1/conversations/c-123/messages", "https://ion.example.com/"),
        ("/v1/conversations/대화", "http://localhost:8080/"),
        ("/health?access_token=opaque", "http://localhost/"),
        ("/v1/feedback?x=%5F&y=1", "http://localhost/"),
    ],
)
def test_the_logged_url_is_werkzeugs(path: str, base: str) -> None:
    with APP.test_request_context(path, base_url=base, method="POST"):
        assert request_url(request) == request.url
