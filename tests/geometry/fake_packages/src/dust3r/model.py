"""FAKE src.dust3r.model of a CUT3R clone (test stand-in): ``ARCroco3DStereo.from_pretrained(path)``."""

import torch


class ARCroco3DStereo(torch.nn.Module):
    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls()
