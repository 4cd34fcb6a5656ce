"""`python -m modelops_serving` / `modelops-serve`: one uvicorn process (uvloop, httptools) from Settings."""

from __future__ import annotations

import logging
import os
import threading
from types import FrameType

from modelops_serving.settings import Settings


def _server_class() -> type:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """On the first SIGTERM/SIGINT: readiness false at once, keep serving for the delay, then the
        normal uvicorn shutdown (stop accepting, let in-flight requests finish). A second signal exits."""

        def __init__(self, config: uvicorn.Config, state: object, delay: float) -> None:
            super().__init__(config)
            self._state = state
            self._delay = delay
            self._draining = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self._draining or self._delay <= 0:
                self._state.begin_drain()  # type: ignore[attr-defined]
                return super().handle_exit(sig, frame)
            self._draining = True
            self._state.begin_drain()  # type: ignore[attr-defined]
            timer = threading.Timer(self._delay, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()

    return DrainingServer


def main() -> None:
    """Run the server until SIGTERM."""
    settings = Settings()
    # Before numpy/scikit-learn load: their pools start at this size in every thread.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(settings.threads))
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import uvicorn

    from modelops_serving.app import create_app
    from modelops_serving.auth import AuthConfigError

    try:
        app = create_app(settings)
    except AuthConfigError as exc:  # never serve open by accident: no tokens, no server
        logging.getLogger("modelops_serving").critical("REFUSED to start: %s", exc)
        raise SystemExit(2) from None
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level=settings.log_level,
        log_config=None,  # keep the root logging set above
        timeout_graceful_shutdown=None,
    )
    server = _server_class()(config, app.state.modelops, settings.shutdown_delay_s)
    server.run()


if __name__ == "__main__":
    main()
