"""Review of the review-13 changes: what they refused or read differently that they should not have."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sddkit.config import load_yaml
from sddkit.errors import ConfigError, ProtocolError
from sddkit.scoring.calibration import fit_calibration

# --- a recipe typed or pasted into a terminal: `sdd train /dev/stdin` ----------------------------------------------


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_recipe_read_from_a_terminal_is_read_as_before():
    # the terminal is a character device, as /dev/zero is, but it ends (Ctrl-D): the device check refused it
    try:
        master, slave = os.openpty()
    except OSError as exc:  # a container without /dev/pts
        pytest.skip(f"no pseudo-terminal: {exc}")
    try:
        import termios

        attrs = termios.tcgetattr(slave)  # line by line, Ctrl-D at a line's start the end (the default, made sure)
        attrs[3] |= termios.ICANON
        attrs[6][termios.VEOF] = b"\x04"
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.write(master, b"trainer:\n  epochs: 3\n\x04")
        assert load_yaml(os.ttyname(slave)) == {"trainer": {"epochs": 3}}
    finally:
        os.close(slave)
        os.close(master)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_that_is_no_terminal_is_still_refused():
    with pytest.raises(ConfigError, match=r"^/dev/zero: a device, not a recipe file"):
        load_yaml("/dev/zero")


# --- calibration labels: the words every other label reader takes ----------------------------------------------

SCORES = np.array([2.0, 1.5, -1.0, -2.0, 0.3, -0.2])
IDS = np.array([1, 1, 0, 0, 1, 0])


@pytest.mark.parametrize(("bona", "spoof"), [("real", "fake"), ("Bona-Fide", "SPOOF"), (" genuine ", "Fake")])
def test_fit_calibration_takes_the_label_words_a_labels_csv_takes(bona, spoof):
    expected = fit_calibration(SCORES, IDS)
    assert fit_calibration(SCORES, np.where(IDS == 1, bona, spoof)) == expected
    assert fit_calibration(SCORES, np.where(IDS == 1, bona, spoof).astype(object)) == expected  # a pandas column


def test_fit_calibration_names_the_words_it_takes_for_an_unknown_label():
    with pytest.raises(
        ProtocolError,
        match=r"labels must be 'bonafide'/'spoof' \(or .*real/fake, in any case\) or 1/0; "
        r"found \['maybe'\]$",
    ):
        fit_calibration(SCORES, ["maybe"] + ["spoof"] * 5)
    # numbers stay numbers, text digits are still named as such
    with pytest.raises(ProtocolError, match=r"\(text, not numbers: give 1/0 as numbers\)"):
        fit_calibration(SCORES, IDS.astype(str))


# --- CORS origins: host names as browsers send them ----------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://web_app:3000", "https://my_team.example.com"])
def test_a_cors_origin_whose_host_name_has_an_underscore_is_taken(origin):
    # Docker Compose service names (web_app) reach the browser's Origin header as written: it was refused as "not
    # an origin", so no page of that host could ever be allowed
    from sddkit.service.app import checked_cors_origins

    assert checked_cors_origins([origin]) == [origin]
