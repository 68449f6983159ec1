"""Human-readable lines for report.json's `quantization` section (used by `convert`)."""

from __future__ import annotations


def _pct(v) -> str:
    return f"{100 * v:.1f}%"


def quantization_lines(report: dict) -> list[str]:
    q = report["quantization"]
    art = report["artifacts"]["tflite"]
    io = art["io"]
    lines = [f"  {q['mode']}: model.tflite {q['bytes'] / 1e6:.2f} MB = {q['size_ratio']:.2f} x fp32 "
             f"(model_fp32.tflite {q['fp32_bytes'] / 1e6:.2f} MB)"]
    for role in ("input", "output"):
        t = io[role]
        scale = f" scale {t['scale']:.6g} zero point {t['zero_point']}" if "scale" in t else ""
        lines.append(f"  {role:<6} {t['dtype']}{scale}")
    recipe = q.get("recipe")
    if recipe:
        lines.append("  recipe: " + recipe_summary(recipe))
    macs = q.get("int8_macs")
    if macs:
        lines.append(f"  int8 kernels (int8 weights and activations): {_pct(macs['share'])} of "
                     f"{macs['total_macs'] / 1e6:.1f}M conv/FC MACs")
        for row in macs["not_int8"]:
            why = row.get("reason", "")
            lines.append(f"    not int8: {row['op']} {row['output']} ({row['input']} input, {row['filter']} weights)"
                         + (f": {why}" if why else ""))
    cal = q.get("calibration")
    if cal:
        where = "synthetic random pixels" if cal["source"] == "synthetic" else cal["source"]
        lines.append(f"  calibrated on {cal['images']} images ({where})")
        if cal.get("unreadable"):  # why fewer than --calibration-size
            names = ", ".join(cal.get("unreadable_files", [])) or "not named"
            lines.append(f"  {cal['unreadable']} of the {cal['requested']} requested calibration images were "
                         f"unreadable and skipped: {names}")
    vs = q.get("vs_fp32", {})
    if vs.get("skipped"):
        lines.append("  comparison with fp32 skipped (--no-verify)")
    elif vs:
        lines.append(f"  vs fp32 on {vs['inputs']}: max|logit err| {vs['max_logit_error']:.3g} "
                     f"(mean {vs['mean_logit_error']:.3g}, max|logit| {vs['max_abs_logit']:.3g}), "
                     f"top-1 agreement {_pct(vs['top1_agreement'])}, top-5 {_pct(vs['top5_agreement'])}")
        if "accuracy_fp32" in vs:
            lines.append(f"  top-1 fp32 {_pct(vs['accuracy_fp32']['top1'])} -> {q['mode']} "
                         f"{_pct(vs['accuracy_quantized']['top1'])} ({vs['top1_drop_points']:+.2f} points drop); "
                         f"top-5 {_pct(vs['accuracy_fp32']['top5'])} -> {_pct(vs['accuracy_quantized']['top5'])}")
    return lines


def recipe_summary(recipe: dict) -> str:
    if recipe.get("recipe") != "accurate":
        return f"{recipe.get('recipe')} ({recipe.get('ranges')}; {recipe.get('weights')})"
    o = recipe["options"]
    ranges = f"percentile {o['percentile']}" if o["ranges"] == "percentile" else o["ranges"]
    parts = [f"accurate: activation ranges {ranges}",
             {"nearest": "weights rounded to nearest", "depthwise": "depthwise weights rounded by output error",
              "all": "weights rounded by output error"}[o["rounding"]]]
    if o["bias_correction"]:
        parts.append("bias correction" + (" on quantized inputs" if o["bias_correction"] == "quantized" else ""))
    return ", ".join(parts)
