"""SPADE's training objective: hinge GAN, discriminator feature matching, VGG19 perceptual loss, KLD.

Two phases per iteration, in the original order, on the same batch:

- ``Gmain``: fake = G(semantics[, z]); D sees [fake; real] in one batch; the generator minimises
  -D(fake) + lambda_feat * feature matching (+ lambda_vgg * VGG) (+ lambda_kld * KLD).
- ``Dmain``: fake regenerated without gradients by the just-updated G; D minimises the hinge loss
  relu(1 + D(fake)) + relu(1 - D(real)).

Losses over the multiscale discriminator are averaged over the ``num_D`` scales, as the original does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spade_rt.model.semantics import one_hot_semantics
from spade_rt.training.options import LossOptions

Preds = list[list[torch.Tensor]]  # per scale: every layer's output, the last one is the prediction map


def hinge_d_loss(pred_fake: Preds, pred_real: Preds) -> tuple[torch.Tensor, torch.Tensor]:
    """(D_fake, D_real): mean over scales of mean(relu(1 + D(fake))), mean(relu(1 - D(real)))."""
    fake = torch.stack([F.relu(1.0 + p[-1]).mean() for p in pred_fake]).mean()
    real = torch.stack([F.relu(1.0 - p[-1]).mean() for p in pred_real]).mean()
    return fake, real


def hinge_g_loss(pred_fake: Preds) -> torch.Tensor:
    """The generator's side of the hinge loss: -mean D(fake), averaged over scales."""
    return torch.stack([-p[-1].mean() for p in pred_fake]).mean()


def feature_matching_loss(pred_fake: Preds, pred_real: Preds) -> torch.Tensor:
    """Sum over scales and intermediate layers of L1(D_j(fake), D_j(real)), divided by the number of scales."""
    total = pred_fake[0][0].new_zeros(())
    for fake_layers, real_layers in zip(pred_fake, pred_real):
        for f, r in zip(fake_layers[:-1], real_layers[:-1]):  # the last output is the prediction: excluded
            total = total + F.l1_loss(f, r.detach())
    return total / len(pred_fake)


class VGGLoss(nn.Module):
    """Weighted L1 between VGG19 features of fake and real images; deeper layers weigh more."""

    weights = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

    def __init__(self, vgg: nn.Module) -> None:
        super().__init__()
        self.vgg = vgg

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_f, real_f = self.vgg(fake), self.vgg(real)
        return sum(w * F.l1_loss(f, r.detach()) for w, f, r in zip(self.weights, fake_f, real_f))


def kld_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)) summed over z dims and the batch, as the original."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + eps * std; eps (N, z_dim) is passed in so that it can come from a seeded generator."""
    return mu + eps * torch.exp(0.5 * logvar)


@dataclass
class LossWeights(LossOptions):
    """The loss options (training/options.py, where their defaults live) and the KLD's scale."""

    kld_scale: float = 1.0  # world size under DDP: KLD is a sum over the batch, DDP averages gradients


class SPADELoss:
    """Computes the phase losses. ``G``/``E``/``D``: the modules to call with gradients (DDP wrappers under
    torchrun); ``D_plain``: D without a DDP wrapper, used in Gmain where D's weights take no gradient.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        D_plain: nn.Module,
        E: nn.Module | None,
        G_plain: nn.Module,
        E_plain: nn.Module | None,
        num_label_ids: int,
        weights: LossWeights,
        vgg: VGGLoss | None = None,
    ) -> None:
        self.G, self.D, self.D_plain, self.E = G, D, D_plain, E
        self.G_plain, self.E_plain = G_plain, E_plain
        self.num_label_ids, self.w, self.vgg = num_label_ids, weights, vgg

    def semantics(self, batch: dict, device: torch.device) -> torch.Tensor:
        """Batch ids (N, H, W) [+ edges] -> (N, semantic_nc, H, W) one-hot input of G and D."""
        edges = batch["edges"].to(device) if batch["edges"].numel() else None
        return one_hot_semantics(batch["label"].to(device), self.num_label_ids, edges)

    def discriminate(self, D: nn.Module, seg: torch.Tensor, fake: torch.Tensor, real: torch.Tensor):
        """One D call on [fake; real] (2N, semantic_nc + 3, H, W), split back into (pred_fake, pred_real)."""
        both = torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0)
        preds = D(both)
        n = fake.shape[0]
        return [[t[:n] for t in p] for p in preds], [[t[n:] for t in p] for p in preds]

    def gmain(self, seg: torch.Tensor, real: torch.Tensor, eps: torch.Tensor | None):
        """Generator phase -> (total loss, {name: detached value}, fake images (N, 3, H, W))."""
        losses: dict[str, torch.Tensor] = {}
        z = None
        if self.E is not None:
            mu, logvar = self.E(real)  # (N, z_dim) each
            z = reparameterize(mu, logvar, eps)
            losses["KLD"] = kld_loss(mu, logvar) * self.w.lambda_kld * self.w.kld_scale
        fake = self.G(seg, z)
        pred_fake, pred_real = self.discriminate(self.D_plain, seg, fake, real)
        losses["GAN"] = hinge_g_loss(pred_fake)
        if self.w.gan_feat_loss:
            losses["GAN_Feat"] = feature_matching_loss(pred_fake, pred_real) * self.w.lambda_feat
        if self.vgg is not None:
            losses["VGG"] = self.vgg(fake, real) * self.w.lambda_vgg
        total = sum(losses.values())
        return total, {k: v.detach() for k, v in losses.items()}, fake.detach()

    def dmain(self, seg: torch.Tensor, real: torch.Tensor, eps: torch.Tensor | None):
        """Discriminator phase -> (total loss, {name: detached value})."""
        with torch.no_grad():
            z = None
            if self.E_plain is not None:
                mu, logvar = self.E_plain(real)
                z = reparameterize(mu, logvar, eps)
            fake = self.G_plain(seg, z)
        pred_fake, pred_real = self.discriminate(self.D, seg, fake, real)
        d_fake, d_real = hinge_d_loss(pred_fake, pred_real)
        return d_fake + d_real, {"D_Fake": d_fake.detach(), "D_real": d_real.detach()}
