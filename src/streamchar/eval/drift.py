"""Quality Drift (paper §5.3, after Rolling Forcing): how far a long stream's quality wanders from its start.

Every `segment` seconds (30 s) the mean per-frame quality of that segment's last `window` seconds (5 s) is
compared with the mean quality of the stream's first `window` seconds; drift is the largest absolute
difference. Only whole segments count (a 5-minute stream has 10), so a stream shorter than one segment
has no drift. Any per-frame scorer plugs in (MUSIQ, or the weights-free proxy of `streamchar.eval.quality`):
this module sees only the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamchar.errors import StreamCharError


@dataclass
class Drift:
    drift: float  # max over segments of |q(segment's last window) - q(first window)|
    reference: float  # q of the first window
    segment_end_s: list[float]  # end time of each whole segment
    segment_quality: list[float]  # q of each segment's last window
    differences: list[float]  # |segment_quality - reference|


def quality_drift(scores, fps: float, segment: float = 30.0, window: float = 5.0) -> Drift:
    """scores: (N,) per-frame quality of one stream at `fps` frames per second."""
    q = np.asarray(scores, dtype=np.float64)
    if q.ndim != 1:
        raise StreamCharError(f"quality_drift takes per-frame scores of shape (N,), got {q.shape}")
    if not fps > 0 or not segment > 0 or not 0 < window <= segment:
        raise StreamCharError(f"quality_drift needs fps > 0 and 0 < window <= segment, got fps {fps}, "
                              f"window {window}, segment {segment}")
    if not np.isfinite(q).all():
        raise StreamCharError("quality scores contain NaN or inf")
    per_window, per_segment = round(window * fps), round(segment * fps)
    if len(q) < per_segment:
        raise StreamCharError(f"the stream is {len(q) / fps:.1f} s long: Quality Drift needs at least one whole "
                              f"{segment:g} s segment")
    reference = float(q[:per_window].mean())
    ends = range(per_segment, len(q) + 1, per_segment)
    quality = [float(q[end - per_window:end].mean()) for end in ends]
    diffs = [abs(x - reference) for x in quality]
    return Drift(drift=max(diffs), reference=reference, segment_end_s=[end / fps for end in ends],
                 segment_quality=quality, differences=diffs)
