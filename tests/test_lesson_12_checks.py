"""Lesson 12's exercise check accepts the pull term and rejects plausible wrong ones with a helpful message."""

import pytest
import torch

from segedu import checks


def pull_term_reference(embeddings, instances, delta_v):
    """What a student writes: a loop over the instance ids, the squared hinge averaged per instance."""
    ids = [i for i in instances.unique().tolist() if i not in (0, 255)]
    total = embeddings.sum() * 0
    for i in ids:
        x = embeddings[:, instances == i]
        distance = (x - x.mean(dim=1, keepdim=True)).norm(dim=0)
        total = total + ((distance - delta_v).clamp(min=0) ** 2).mean()
    return total / max(1, len(ids))


def pull_term_package(embeddings, instances, delta_v):
    from segedu.losses.discriminative import discriminative_terms

    return discriminative_terms(embeddings[None], instances[None], delta_v)["pull"][0]


def test_check_accepts_the_reference_and_the_package(capsys):
    checks.check_pull_term(pull_term_reference)
    checks.check_pull_term(pull_term_package)
    assert capsys.readouterr().out.strip().endswith("PASSED")


def with_mistake(keep=lambda i: i not in (0, 255), per_pixel=False, sum_instances=False, squared=False,
                 square=True, clamp=True, margin=True):
    def pull(embeddings, instances, delta_v):
        ids = [i for i in instances.unique().tolist() if keep(i)]
        terms, hinges = [], []
        for i in ids:
            x = embeddings[:, instances == i]
            offset = x - x.mean(dim=1, keepdim=True)
            d = (offset**2).sum(0) if squared else offset.norm(dim=0)
            h = d - (delta_v if margin else 0.0)
            h = h.clamp(min=0) if clamp else h
            h = h**2 if square else h
            terms.append(h.mean())
            hinges.append(h)
        if not ids:
            return embeddings.sum() * 0
        if per_pixel:
            return torch.cat(hinges).mean()
        return sum(terms) if sum_instances else sum(terms) / len(terms)
    return pull


def per_instance_vector(embeddings, instances, delta_v):
    ids = [i for i in instances.unique().tolist() if i not in (0, 255)]
    values = []
    for i in ids:
        x = embeddings[:, instances == i]
        values.append((((x - x.mean(1, keepdim=True)).norm(dim=0) - delta_v).clamp(min=0) ** 2).mean())
    return torch.stack(values) if values else embeddings.sum() * 0


def detached(embeddings, instances, delta_v):
    return torch.tensor(pull_term_reference(embeddings, instances, delta_v).item())


def nan_when_empty(embeddings, instances, delta_v):
    ids = [i for i in instances.unique().tolist() if i not in (0, 255)]
    terms = [pull_term_reference(embeddings, torch.where(instances == i, 1, 0), delta_v) for i in ids]
    return torch.stack(terms).mean() if terms else torch.tensor(float("nan"))


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda e, i, d: None, "None"),
        (per_instance_vector, "scalar"),
        (lambda e, i, d: pull_term_reference(e, i, d).item(), "torch.Tensor"),
        (detached, "autograd"),
        (with_mistake(keep=lambda i: i != 255), "Background pixels"),
        (with_mistake(keep=lambda i: i != 0), "Ignored pixels"),
        (with_mistake(per_pixel=True), "within each instance first"),
        (with_mistake(sum_instances=True), "number of instances C"),
        (with_mistake(squared=True), "not its square"),
        (with_mistake(square=False), "Square the hinge"),
        (with_mistake(clamp=False), "Clamp the hinge"),
        (with_mistake(margin=False), "subtracts delta_v"),
        (nan_when_empty, "NaN"),
        (lambda e, i, d: pull_term_reference(e, i, 0.5), "delta_v=0.2"),
    ],
)
def test_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_pull_term(wrong)


def test_check_lets_not_implemented_through():
    def not_written(embeddings, instances, delta_v):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        checks.check_pull_term(not_written)
