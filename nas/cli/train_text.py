"""The text `nas train` prints of a training run (`summary_text`); --json prints the summary
itself."""
from __future__ import annotations

from typing import Any


def summary_text(summary: dict[str, Any], data_summary: dict[str, Any]) -> str:
    """What `nas train` prints of a run: the network, data, recipe, the epochs' table, the
    final accuracies, the time and the checkpoint."""
    recipe = summary["recipe"]["train"]
    augment = summary["recipe"]["augment"]
    aug = "none"
    if augment is not None:
        from estimators.train import Augment

        pad = Augment(**augment).pixels(summary["resolution"])
        aug = f"random crop ({pad} px padding)" + (" and flip" if augment["flip"] else "")
    channels = summary["in_channels"]
    lines = [summary["key"],
             f"params: {summary['params']:,} ({summary['num_classes']} classes, {channels} "
             f"channel{'s' if channels > 1 else ''}, trained at {summary['resolution']} px)",
             f"data: {data_summary['name']} ({data_summary['source']}), train "
             f"{data_summary['train']}, val {data_summary['val']}, test {data_summary['test']}",
             f"recipe: {summary['epochs']} epochs, batch {recipe['batch_size']}, "
             f"{'AdamW' if recipe.get('optimizer') == 'adamw' else 'SGD'} lr "
             f"{recipe['lr']:g} (warm-up + cosine), weight decay {recipe['weight_decay']:g}, "
             f"label smoothing {recipe['label_smoothing']:g}, "
             + (f"gradient norm cap {recipe['clip_norm']:g}, " if recipe.get("clip_norm")
                else "")
             + f"augmentation {aug}, seed {summary['seed']}"]
    if summary.get("init"):
        lines.append(f"from: {summary['init']['from']}")
    if summary.get("distill"):
        d = summary["distill"]
        lines.append(f"distill: teacher {d['teacher']} ({d['teacher_key']}), weight "
                     f"{d['weight']:g}, temperature {d['temperature']:g}")
    lines.append("epoch  train loss  val acc  seconds")
    for row in summary["history"]:
        lines.append(f"{row['epoch']:>5}  {row['loss']:>10.4f}  {row['val_acc']:>7.2f}  "
                     f"{row['seconds']:>7.1f}")
    recalibrated = summary.get("bn_recalibrated") or 0
    lines.append(f"final: val {summary['val_acc']:.2f} %, test {summary['test_acc']:.2f} %"
                 + (f" (BatchNorm statistics re-estimated on {recalibrated:,} training images)"
                    if recalibrated else ""))
    resumed = summary["resumed_from"]
    if resumed == summary["epochs"]:
        lines.append(f"time: {summary['total_seconds']:.1f}s (already complete: nothing to "
                     f"resume)")
    else:
        lines.append(f"time: {summary['seconds']:.1f}s" + (
            f" (resumed after epoch {resumed}; {summary['total_seconds']:.1f}s in all)"
            if resumed else ""))
    lines.append(f"checkpoint: {summary['checkpoint']}")
    return "\n".join(lines)


__all__ = ["summary_text"]
