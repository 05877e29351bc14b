"""A client for Mosquitto's dynamic-security plugin: the county broker's logins and ACLs.

Commands go to `$CONTROL/dynamic-security/v1` as `{"commands": [...]}`; the plugin answers each
on `$CONTROL/dynamic-security/v1/response`, to the requesting client only, with
`{"responses": [{"command", "correlationData", "error"?}]}`. Every call waits for the answer
to each of its commands and raises `DynSecError` naming the command and the plugin's message:
a login that silently failed to be created would leave a station that can never connect.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"


class DynSecError(RuntimeError):
    """The plugin refused a command, or never answered; the message says which and why."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"dynamic-security {command}: {message}")
        self.command = command
        self.plugin_message = message


def acl(acltype: str, topic: str, *, allow: bool = True, priority: int = 0) -> dict[str, Any]:
    """One ACL entry as the plugin spells it (acltype: publishClientSend, subscribePattern, ...)."""
    return {"acltype": acltype, "topic": topic, "allow": allow, "priority": priority}


class DynSec:
    """One MQTT 5 connection with an account allowed to send `$CONTROL/dynamic-security/#`."""

    def __init__(self, host: str, port: int, username: str, password: str, *, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._answers: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._connack: Any = None
        self._lock = threading.Lock()  # one call at a time: answers are matched within a call
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"yimen-dynsec-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        client.username_pw_set(username, password)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = lambda _c, _u, _mid, codes, _p: self._answers.put({"suback": [c.value for c in codes]})
        self._client = client
        try:
            client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise DynSecError("connect", f"cannot reach the broker at {host}:{port}: {exc}") from None
        client.loop_start()
        if not self._connected.wait(timeout) or self._connack.is_failure:
            self.close()
            why = self._connack or "no CONNACK"
            raise DynSecError("connect", f"broker {host}:{port} refused user {username!r}: {why}")
        client.subscribe(RESPONSE_TOPIC, qos=1)
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            answer = {"suback": [None]}
        if not all(code is not None and code < 0x80 for code in answer.get("suback", [None])):
            self.close()
            raise DynSecError("connect", f"user {username!r} may not read {RESPONSE_TOPIC}: not a dynsec admin")

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connack = reason
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return
        for response in doc.get("responses", []) if isinstance(doc, dict) else []:
            self._answers.put(response)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> DynSec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, *commands: dict[str, Any], ok_errors: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Send commands in one message; return each one's response, in order.

        A response with an `error` raises DynSecError, unless its text is in `ok_errors`
        (e.g. "Client not found" when deleting what may already be gone)."""
        tagged = [{**cmd, "correlationData": uuid.uuid4().hex} for cmd in commands]
        waiting = {cmd["correlationData"]: cmd["command"] for cmd in tagged}
        with self._lock:
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise DynSecError(commands[0]["command"], f"could not publish to the broker: {info.rc}")
            got: dict[str, dict[str, Any]] = {}
            while len(got) < len(waiting):
                try:
                    response = self._answers.get(timeout=self._timeout)
                except queue.Empty:
                    missing = sorted(waiting[c] for c in waiting if c not in got)
                    raise DynSecError(
                        ",".join(missing),
                        f"no response within {self._timeout} s: is the dynamic-security plugin loaded?",
                    ) from None
                corr = response.get("correlationData")
                if corr in waiting:
                    got[corr] = response
        out = [got[cmd["correlationData"]] for cmd in tagged]
        for response in out:
            error = response.get("error")
            if error and error not in ok_errors:
                raise DynSecError(response.get("command", "?"), error)
        return out

    # ----- the commands yimen uses ----------------------------------------------------------

    def create_role(self, rolename: str, acls: list[dict[str, Any]], textname: str = "") -> None:
        self.call({"command": "createRole", "rolename": rolename, "textname": textname, "acls": acls})

    def delete_role(self, rolename: str) -> None:
        self.call({"command": "deleteRole", "rolename": rolename}, ok_errors=("Role not found",))

    def create_client(
        self, username: str, password: str, roles: list[str], *, clientid: str | None = None, textname: str = ""
    ) -> None:
        cmd: dict[str, Any] = {
            "command": "createClient",
            "username": username,
            "password": password,
            "textname": textname,
            "roles": [{"rolename": r} for r in roles],
        }
        if clientid is not None:
            cmd["clientid"] = clientid  # the broker then refuses this login under any other client id
        self.call(cmd)

    def delete_client(self, username: str) -> None:
        """Delete a login; the plugin also disconnects any session it has open."""
        self.call({"command": "deleteClient", "username": username}, ok_errors=("Client not found",))

    def get_client(self, username: str) -> dict[str, Any] | None:
        (response,) = self.call({"command": "getClient", "username": username}, ok_errors=("Client not found",))
        if response.get("error"):
            return None
        return response.get("data", {}).get("client")

    def get_role(self, rolename: str) -> dict[str, Any] | None:
        (response,) = self.call({"command": "getRole", "rolename": rolename}, ok_errors=("Role not found",))
        if response.get("error"):
            return None
        return response.get("data", {}).get("role")
