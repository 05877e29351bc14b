"""Live view of a window, only while the county asks for it and never past its deadline.

The `live-view` command starts a session for one window, for `seconds` (default 5 min, at most
30): either low-rate JPEG frames over MQTT on `.../live/<window>` at QoS 0, not through the
outbox (a late live frame is worth nothing), or, where `[media] live_push_url` is set, a push of
every frame through ffmpeg to the county's RTSP/RTMP server. A session ends by itself at its
deadline, on `live-view` with `stop: true`, or when the gateway stops.

Frames come from the camera's frame listener on the camera thread; the listener only hands
over (to the uplink's queue, or to the push session's bounded queue, dropping a frame when
ffmpeg falls behind). Each session has a named timer thread for its deadline; a push session
also has a thread that feeds ffmpeg.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mqtt import topics
from mqtt.commands import Arg, Command, CommandError
from mqtt.config import MediaConfig
from peripherals.camera import Camera
from peripherals.camera.frames import Frame

log = logging.getLogger("yimen.live")

DEFAULT_S = 300.0
MAX_S = 1800.0
_PUSH_QUEUE = 4  # frames waiting for ffmpeg; more means the link cannot keep up: drop


class _Session:
    """One window's live view until its deadline; subclasses say where frames go."""

    via = ""

    def __init__(self, camera: Camera, seconds: float, on_end: Callable[[_Session], None]) -> None:
        self.window = camera.config.window
        self.until = time.time() + seconds
        self._deadline = time.monotonic() + seconds
        self._on_end = on_end
        self._ended = threading.Event()
        self.frames = 0
        self._timer = threading.Timer(seconds, self.end, args=("deadline",))
        self._timer.name = f"yimen-live-w{self.window}"
        self._timer.daemon = True
        self._remove = camera.add_frame_listener(self._frame)

    def start(self) -> None:
        self._timer.start()

    def end(self, why: str) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        self._remove()
        self._timer.cancel()
        self._close()
        log.info("live view of window %d ended (%s) after %d frames", self.window, why, self.frames)
        self._on_end(self)

    def _frame(self, frame: Frame) -> None:
        if self._ended.is_set() or time.monotonic() >= self._deadline:
            return  # the timer ends the session: never a frame past the deadline
        if self._send(frame):
            self.frames += 1

    def _send(self, frame: Frame) -> bool:
        """Hand the frame over (camera thread); True if it was taken."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release what the session holds."""

    def describe(self) -> dict[str, Any]:
        return {"window": self.window, "via": self.via, "until": round(self.until, 3)}


class _MqttSession(_Session):
    via = "mqtt"

    def __init__(
        self,
        camera: Camera,
        seconds: float,
        on_end: Callable[[_Session], None],
        publish: Callable[[str, bytes], None],
        topic: str,
        interval_s: float,
    ) -> None:
        self.topic = topic
        self._publish = publish
        self._interval = interval_s
        self._last: float | None = None
        super().__init__(camera, seconds, on_end)

    def _send(self, frame: Frame) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._interval * 0.95:  # 5 %: frame-period jitter
            return False
        self._last = now
        self._publish(self.topic, frame.jpeg)
        return True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "topic": self.topic, "interval_s": self._interval}


def push_command(url: str, fps: float) -> list[str]:
    """ffmpeg reading concatenated JPEGs on stdin, pushing H.264 to an RTSP or RTMP server."""
    out = ["-f", "rtsp", "-rtsp_transport", "tcp"] if url.startswith("rtsp") else ["-f", "flv"]
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
        "-use_wallclock_as_timestamps", "1", "-f", "mjpeg", "-i", "pipe:0",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-g", str(max(1, round(fps * 2))), *out, url,
    ]  # fmt: skip


class _PushSession(_Session):
    via = "push"

    def __init__(self, camera: Camera, seconds: float, on_end: Callable[[_Session], None], url: str) -> None:
        self.url = url
        self._frames: queue.Queue[bytes | None] = queue.Queue(_PUSH_QUEUE)
        self._proc = subprocess.Popen(
            push_command(url, camera.config.fps), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        self._writer = threading.Thread(target=self._feed, name=f"yimen-live-push-w{camera.config.window}", daemon=True)
        super().__init__(camera, seconds, on_end)

    def start(self) -> None:
        self._writer.start()
        super().start()

    def _send(self, frame: Frame) -> bool:
        try:
            self._frames.put_nowait(frame.jpeg)
        except queue.Full:
            return False
        return True

    def _feed(self) -> None:
        assert self._proc.stdin is not None
        while (jpeg := self._frames.get()) is not None:
            try:
                self._proc.stdin.write(jpeg)
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                log.error("ffmpeg pushing window %d to %s exited (code %s)", self.window, self.url, self._proc.poll())
                self.end("ffmpeg exited")
                return

    def _close(self) -> None:
        while True:  # make room for the end marker; frames still queued are not worth sending
            try:
                self._frames.put_nowait(None)
                break
            except queue.Full:
                self._frames.get_nowait()
        if self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join(5)
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url}


class LiveView:
    """The `live-view` command and its sessions, one per window at most."""

    def __init__(
        self,
        cameras: Mapping[int, Camera],
        publish_live: Callable[[str, bytes], None],
        county: str,
        station: str,
        config: MediaConfig,
    ) -> None:
        self._cameras = cameras
        self._publish = publish_live
        self._county = county
        self._station = station
        self._config = config
        self._lock = threading.Lock()  # the command thread starts sessions, timers end them
        self._sessions: dict[int, _Session] = {}

    def start(self) -> None:
        """Nothing runs until the county asks."""

    def stop(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.end("gateway stopping")

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"sessions": [s.describe() for s in self._sessions.values()]}

    def commands(self) -> list[Command]:
        return [
            Command(
                "live-view",
                self._command,
                args={
                    "window": Arg("int", required=True, min=1),
                    "seconds": Arg("number", min=1, max=MAX_S),
                    "stop": Arg("bool"),
                    "via": Arg("str", choices=("mqtt", "push")),
                    "interval_s": Arg("number", min=0.5, max=60),
                },
                doc="live view of a window for `seconds` (default 300, at most 1800), or `stop: true`",
            )
        ]

    def _command(self, args: dict[str, Any]) -> dict[str, Any]:
        window = args["window"]
        camera = self._cameras.get(window)
        if camera is None:
            raise CommandError("bad-request", f"no camera watches window {window}; cameras: {sorted(self._cameras)}")
        with self._lock:
            running = self._sessions.get(window)
        if running is not None:
            running.end("stopped by command" if args.get("stop") else "replaced by a new request")
        if args.get("stop"):
            return {"window": window, "stopped": running is not None}
        session = self._open(camera, float(args.get("seconds", DEFAULT_S)), args)
        with self._lock:
            self._sessions[window] = session
        session.start()
        log.info("live view of window %d: %s", window, session.describe())
        return session.describe()

    def _open(self, camera: Camera, seconds: float, args: dict[str, Any]) -> _Session:
        via = args.get("via", "push" if self._config.live_push_url else "mqtt")
        if via == "mqtt":
            topic = topics.live_topic(self._county, self._station, camera.config.window)
            interval = float(args.get("interval_s", self._config.live_interval_s))
            return _MqttSession(camera, seconds, self._ended, self._publish, topic, interval)
        url = self._config.live_push_url
        if url is None:
            raise CommandError("bad-request", "via push: this station has no [media] live_push_url; use via mqtt")
        if shutil.which("ffmpeg") is None:
            raise CommandError("failed", "via push: ffmpeg is not installed on this station (apt-get install ffmpeg)")
        url = url.replace("{station}", self._station).replace("{window}", str(camera.config.window))
        return _PushSession(camera, seconds, self._ended, url)

    def _ended(self, session: _Session) -> None:
        with self._lock:
            if self._sessions.get(session.window) is session:
                del self._sessions[session.window]
