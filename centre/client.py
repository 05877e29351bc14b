"""A console's HTTP client for programs (the demo, the tests, scripts): logs in like the page
does (a session cookie, and the CSRF token sent with every POST)."""

from __future__ import annotations

import http.cookiejar
import json
import ssl
import urllib.request
from typing import Any


class ConsoleClient:
    def __init__(self, url: str, timeout: float = 15.0, tls: ssl.SSLContext | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.csrf = ""
        self.cookies = http.cookiejar.CookieJar()
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPCookieProcessor(self.cookies)]
        if tls is not None:
            handlers.append(urllib.request.HTTPSHandler(context=tls))
        self.opener = urllib.request.build_opener(*handlers)

    def login(self, name: str, password: str) -> dict[str, Any]:
        doc = self.post("/api/login", {"user": name, "password": password})
        self.csrf = doc["csrf"]
        return doc

    def open(self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        """The raw response (raises urllib.error.HTTPError for 4xx/5xx)."""
        request = urllib.request.Request(
            self.url + path, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
        )
        return self.opener.open(request, timeout=self.timeout)

    def get(self, path: str) -> Any:
        with self.open(path) as res:
            return json.load(res)

    def post(self, path: str, doc: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json", "X-CSRF-Token": self.csrf}
        with self.open(path, json.dumps(doc or {}).encode(), headers) as res:
            return json.load(res)
