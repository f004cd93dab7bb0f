"""Train FlowNetCLite or PWCLite on the CPU for a few hundred steps on synthetic warps of photographs
bundled with scikit-image, and watch the flow error fall.

Run: ``python examples/train_synthetic.py --model pwc --steps 300``
"""

import argparse
import sys
from pathlib import Path

import torch
from skimage import color, data, transform

sys.path.insert(0, str(Path(__file__).parent))
from models import FlowNetCLite, PWCLite, backwarp  # noqa: E402

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"]


def photos(size):
    out = []
    for name in PHOTOS:
        im = getattr(data, name)()
        im = color.gray2rgb(im) if im.ndim == 2 else im[..., :3]
        resized = transform.resize(im, (size * 2, size * 2), anti_aliasing=True)
        out.append(torch.from_numpy(resized).float().permute(2, 0, 1))
    return out


def sample(images, size, batch, gen, max_flow=4.0):
    """Random crops, each warped by a random smooth flow (a coarse random grid, upsampled)."""
    img1, flows = [], []
    for _ in range(batch):
        im = images[torch.randint(len(images), (1,), generator=gen).item()]
        y, x = torch.randint(0, im.shape[1] - size, (2,), generator=gen).tolist()
        img1.append(im[:, y:y + size, x:x + size])
        coarse = (torch.rand(1, 2, 3, 3, generator=gen) * 2 - 1) * max_flow
        flows.append(torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0])
    img1, flow = torch.stack(img1), torch.stack(flows)
    img2 = backwarp(img1, -flow)  # frame 2 at x + flow shows frame 1 at x
    return img1, img2, flow


def epe(pred, flow, margin=6):
    d = (pred - flow)[..., margin:-margin, margin:-margin]
    return d.pow(2).sum(1).sqrt().mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=["pwc", "flownetc"], default="pwc")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    images = photos(args.size)
    model = PWCLite() if args.model == "pwc" else FlowNetCLite()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    val = sample(images, args.size, 16, torch.Generator().manual_seed(123))
    with torch.no_grad():
        start_epe = epe(model(val[0], val[1]), val[2]).item()
        zero_epe = epe(torch.zeros_like(val[2]), val[2]).item()
    from rich.progress import Progress

    with Progress() as progress:
        task = progress.add_task(f"training {args.model}", total=args.steps)
        for step in range(args.steps):
            img1, img2, flow = sample(images, args.size, args.batch, gen)
            loss = epe(model(img1, img2), flow)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            progress.update(task, advance=1, description=f"training {args.model} (train EPE {loss.item():.2f})")
    with torch.no_grad():
        end_epe = epe(model(val[0], val[1]), val[2]).item()
    print(f"validation EPE: zero flow {zero_epe:.2f} px, untrained {start_epe:.2f} px, "
          f"after {args.steps} steps {end_epe:.2f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
