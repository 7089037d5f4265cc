"""Settings for the messaging benchmark's server: Pli's own, with the per-token API rate
limit raised so that it doesn't cap the measured throughput. The limiter itself still runs
(its shared-cache read and write are part of every request's cost)."""

from pli.settings import *  # noqa: F403
from pli.settings import REST_FRAMEWORK

REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "10000000/min"}}
