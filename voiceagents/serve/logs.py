"""The log of ``voiceagents.serve`` (supervisor and workers): stderr, whatever Django's LOGGING."""

from __future__ import annotations

import logging
import sys

import uvicorn.config  # noqa: F401 - registers the TRACE level name of --log-level trace

NAME = "voiceagents.serve"


def configure(level: str) -> logging.Logger:
    logger = logging.getLogger(NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s")
        )
        logger.addHandler(handler)
    logger.setLevel(logging.getLevelName(level.upper()))
    # Django's LOGGING may have disabled it (disable_existing_loggers) since the last call.
    logger.disabled = False
    logger.propagate = False  # one line each, also where Django's root logger prints too
    return logger
