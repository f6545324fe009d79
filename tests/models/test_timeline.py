"""The transcript's timeline: plans from timings and from mean durations, and the durations measured."""

import math

import pytest
import torch

from streamchar.models.timeline import (measure_durations, plan_end, plan_from_durations, plan_from_spans,
                                       reference_pace, spoken_at)

NAN = math.nan


def test_plan_from_spans_puts_tokens_of_no_word_in_their_gap():
    # word A (2 tokens), then ", |" between A and B (a pause), then "|" alone before C, then a final "."
    spans = torch.tensor([[0.5, 0.6], [0.6, 0.7], [NAN, NAN], [NAN, NAN], [1.0, 1.2], [NAN, NAN], [1.25, 1.4],
                          [NAN, NAN]])
    plan = plan_from_spans(spans, rate=10.0)
    expected = [5.0, 6.0, 7.0, 10.0, 10.0, 12.0, 12.5, 14.0]  # the first of a run opens the gap
    assert torch.allclose(plan, torch.tensor(expected))
    assert (plan[1:] >= plan[:-1]).all()
    lead = plan_from_spans(torch.tensor([[NAN, NAN], [0.4, 0.5]]), rate=10.0)
    assert lead.tolist() == [0.0, 4.0]


def test_plan_from_durations_and_its_end():
    durations = torch.tensor([1.0, 2.0, 0.5, 3.0])
    ids = torch.tensor([1, 3, 2, 1])
    plan = plan_from_durations(ids, durations, start=4.0)
    assert plan.tolist() == [4.0, 6.0, 9.0, 9.5]
    assert plan_end(ids, durations, plan) == 11.5
    assert plan_end(ids[:0], durations, plan[:0]) == 0.0


def test_a_pace_scales_every_duration_and_a_reference_measures_it():
    durations = torch.tensor([1.0, 2.0, 0.5, 3.0])
    ids = torch.tensor([1, 3, 2, 1])
    slow = plan_from_durations(ids, durations, start=4.0, pace=1.5)
    assert slow.tolist() == [4.0, 7.0, 11.5, 12.25]  # the start stays, every gap is 1.5x
    assert plan_end(ids, durations * 1.5, slow) == 15.25
    # a voice that took 11 latents to say what the durations plan as 7.5 (2 + 3 + 0.5 + 2) is 11 / 7.5 slower
    assert math.isclose(reference_pace(ids, durations, 11.0), 11.0 / 7.5)
    assert math.isclose(reference_pace(ids, durations, 7.5), 1.0)
    with pytest.raises(ValueError, match="plans no time"):
        reference_pace(ids, torch.zeros(4), 3.0)


def test_measure_durations_means_per_type_and_lead_in():
    clips = [(torch.tensor([0, 1, 0]), torch.tensor([2.0, 4.0, 5.0])),  # 0 lasts 2, 1 lasts 1
             (torch.tensor([0, 2]), torch.tensor([4.0, 8.0]))]  # 0 lasts 4
    durations, lead = measure_durations(clips, vocab_size=4, default=1.5)
    assert durations.tolist() == [3.0, 1.0, 1.5, 1.5]  # 2 and 3 never have a successor: the default
    assert lead == 3.0
    # a plan of the measured durations reproduces a clip spoken at the mean pace
    assert plan_from_durations(torch.tensor([0, 1, 0]), durations, start=lead).tolist() == [3.0, 6.0, 7.0]


def test_spoken_at_reads_each_frame_token_off_the_plan():
    durations = torch.tensor([1.0, 2.0, 0.5, 3.0])
    ids = torch.tensor([1, 3, 2])
    # starts -1.2 (rounds to -1: already speaking at frame 0), 1.6 (2), 2.4 (2: the same frame, the later wins);
    # the last token (type 2) ends at 2.4 + 0.5 -> frame 3
    plan = torch.tensor([-1.2, 1.6, 2.4])
    assert spoken_at(plan, ids, durations, 6).tolist() == [1, 1, 2, -1, -1, -1]
    late = plan + 3.0  # nothing spoken before the first token starts
    assert spoken_at(late, ids, durations, 8).tolist() == [-1, -1, 1, 1, 1, 2, -1, -1]
    assert spoken_at(plan[:0], ids[:0], durations, 3).tolist() == [-1, -1, -1]
    behind = torch.tensor([0.0, 3.0, 2.0])  # a plan that goes back (an interrupt): the token waits its turn
    assert spoken_at(behind, ids, durations, 5).tolist() == [1, 1, 1, 2, -1]  # it ends at 3 + 0.5
