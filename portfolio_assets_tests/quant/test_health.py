import numpy as np
import pandas as pd

from portfolio_assets.partitions import master_sessions, session_close_utc
from portfolio_assets.quant.health import HealthParams, assess_symbol

AS_OF = pd.Timestamp("2024-07-12")
SESSIONS = master_sessions("2024-06-03", "2024-07-12")
P = HealthParams(min_days_floor=10, staleness=1, max_abs_return=0.5)


def bars(days, close=None):
    days = pd.DatetimeIndex(days)
    c = np.linspace(100, 110, len(days)) if close is None else np.asarray(close, dtype=float)
    return pd.DataFrame({"time": days.tz_localize("UTC"), "open": c, "high": c, "low": c, "close": c, "volume": 1.0})


def assess(b, calendar="XNYS", n=None):
    n = len(SESSIONS) if n is None else n
    return assess_symbol(b, calendar, SESSIONS[0], AS_OF, session_close_utc(AS_OF).value, n, P)


def test_ok_equity():
    assert assess(bars(SESSIONS))["status"] == "OK"


def test_missing():
    assert assess(bars([]))["status"] == "MISSING"


def test_gap_on_own_calendar_but_not_on_holiday():
    r = assess(bars(SESSIONS.delete([10, 11])))
    assert r["status"] == "GAPS" and r["n_gap_days"] == 2 and "2024-06-17..2024-06-18" in r["gap_ranges"]
    # July 4th is not an XNYS session: no gap there
    assert "2024-07-04" not in assess(bars(SESSIONS))["gap_ranges"]


def test_crypto_needs_weekends_and_is_judged_on_its_calendar():
    days = pd.date_range(SESSIONS[0], AS_OF - pd.Timedelta(days=1))
    assert assess(bars(days), "24/7")["status"] == "OK"
    weekdays_only = days[days.dayofweek < 5]
    r = assess(bars(weekdays_only), "24/7")
    assert r["status"] == "GAPS"


def test_stale_when_last_bar_lags():
    r = assess(bars(SESSIONS[:-3]))
    assert r["status"] == "STALE" and r["stale_days"] == 3
    assert assess(bars(SESSIONS[:-1]))["status"] == "OK"  # one session of lag is allowed


def test_bad_ticks_non_positive_and_absurd_jump():
    c = np.linspace(100, 110, len(SESSIONS))
    c[5] = -1.0
    assert assess(bars(SESSIONS, c))["status"] == "BAD_TICKS"
    c = np.linspace(100, 110, len(SESSIONS))
    c[7] = c[7] * 10
    r = assess(bars(SESSIONS, c))
    assert r["status"] == "BAD_TICKS" and r["n_bad_ticks"] == 2  # up and back down


def test_insufficient_and_priority():
    assert assess(bars(SESSIONS), n=5)["status"] == "INSUFFICIENT"
    r = assess(bars(SESSIONS[:-3].delete(4)), n=5)
    assert r["status"] == "STALE" and "GAPS" in r["issues"] and "INSUFFICIENT" in r["issues"]


def test_late_listing_is_not_a_gap():
    assert assess(bars(SESSIONS[15:]), n=len(SESSIONS) - 15)["status"] == "OK"
