"""SkipRedundantModeSwitch: same modes as nn.Module.train, without the work when nothing changes."""
from torch import nn

from realm.models.modes import SkipRedundantModeSwitch


class Net(SkipRedundantModeSwitch):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        self.b = nn.Linear(2, 2)


def modes(net):
    return [m.training for m in net.modules()]


def test_modes_match_plain_module_train(monkeypatch):
    net = Net()
    assert modes(net.eval()) == [False] * 5
    assert modes(net.train()) == [True] * 5
    net.a[1].eval()  # a submodule out of step: the full switch must run and fix it
    assert modes(net.train()) == [True] * 5
    net.b.train(False)
    assert modes(net.eval()) == [False] * 5
    calls = []
    monkeypatch.setattr(nn.Module, "train", lambda self, mode=True: calls.append(mode) or self)
    net.eval()  # already eval everywhere: nn.Module.train is not called
    assert calls == []
    net.train()
    assert calls == [True]
