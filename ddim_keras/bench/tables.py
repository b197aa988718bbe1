"""The printed tables: one backend's benchmark (:func:`format_table`) and the backend
comparison (:func:`format_backends_table`), each from its result dict.

Text only: the numbers are all in the results (and their JSON); these functions
choose which to show and how to round them.
"""

from ddim_keras.core.backend import BACKEND_LABELS


def _si(value, unit):
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.2f} {unit}"


def _versions_text(versions):
    names = [
        ("tensorflow", "TensorFlow"),
        ("jax", "JAX"),
        ("jaxlib", "jaxlib"),
        ("torch", "PyTorch"),
        ("keras", "Keras"),
    ]
    return ", ".join(f"{label} {versions[key]}" for key, label in names if key in versions)


def _train_rows(train):
    if train is None:
        return []
    rows = [
        ("train: first step (tracing)", f"{train['first_step_s']:.2f} s"),
        (
            "train: step time",
            f"{train['step_s']:.3f} s (min {train['step_s_min']:.3f}, max "
            f"{train['step_s_max']:.3f}; {train['timed_steps']} steps, "
            f"{train['compiler']})",
        ),
        (
            "train: images/s",
            f"{train['images_per_s']:.2f} (each step waited for; "
            f"{train['pipelined_images_per_s']:.2f} pipelined, "
            "steps queued without waiting)",
        ),
    ]
    mixed_train = train.get("mixed")
    if mixed_train and "skipped" in mixed_train:
        rows.append(
            (f"train: {mixed_train['precision']}", f"not measured: {mixed_train['skipped']}")
        )
    elif mixed_train:
        rows.append(
            (
                f"train: {mixed_train['precision']} step time",
                f"{mixed_train['step_s']:.3f} s ({mixed_train['images_per_s']:.2f} "
                f"images/s, {mixed_train['pipelined_images_per_s']:.2f} pipelined; "
                f"{mixed_train['speedup_over_float32']:.2f}x float32)",
            )
        )
    return rows


def _sampling_rows(sampling):
    if sampling is None:
        return []
    rows = [
        (
            "sampling: compiled images/s",
            f"{sampling['compiled_images_per_s']:.2f} "
            f"({sampling['compiled_s']:.2f} s for "
            f"{sampling['num_images']} images x "
            f"{sampling['steps']} steps; median of "
            f"{sampling['repeats']}; "
            f"{sampling['compiled_image_steps_per_s']:.1f} "
            "image-steps/s)",
        ),
    ]
    if sampling["loop_images_per_s"] is None:
        rows.append(("sampling: Python loop", f"not measured: {sampling['loop']}"))
    else:
        rows += [
            (
                "sampling: Python loop images/s",
                f"{sampling['loop_images_per_s']:.2f} "
                f"({sampling['loop_s']:.2f} s, "
                f"{sampling['loop']})",
            ),
            ("sampling: compiled / loop", f"{sampling['ratio']:.2f}x"),
            (
                "sampling: max |compiled - loop|",
                f"{sampling['max_abs_diff']:.2e} of values up to {sampling['max_abs_value']:.3g} "
                f"({'agree' if sampling['agree'] else 'DIFFER'})",
            ),
        ]
    mixed = sampling["mixed"]
    if mixed is not None:
        versus_loop = "" if mixed["ratio"] is None else f"{mixed['ratio']:.2f}x the loop, "
        rows += [
            (
                f"sampling: compiled {mixed['precision']} images/s",
                f"{mixed['images_per_s']:.2f} ({mixed['compiled_s']:.2f} s; {versus_loop}"
                f"{mixed['speedup_over_float32']:.2f}x float32; "
                f"{mixed['image_steps_per_s']:.1f} image-steps/s)",
            ),
            (
                f"sampling: {mixed['precision']} vs float32",
                f"max difference {100.0 * mixed['max_rel_diff']:.2g} % of the largest value",
            ),
        ]
    return rows


def format_table(result):
    """The table of one backend's ``result`` (see :func:`~ddim_keras.bench.run.run_benchmark`)."""
    flops, config = result["flops"], result["config"]
    skipped = result.get("skipped", {})
    rows = [
        ("backend", BACKEND_LABELS.get(result["backend"], result["backend"])),
        ("device", result["device"]),
        (
            "config",
            f"{config['image_size']} px, widths {config['widths']}, block_depth "
            f"{config['block_depth']}, batch {result['batch_size']}",
        ),
        ("versions", _versions_text(result["versions"])),
    ]
    rows += _train_rows(result["train"])
    rows += _sampling_rows(result["sampling"])
    pipeline = result.get("data")
    if pipeline:
        verdict = (
            "keeps up"
            if pipeline["ratio"] >= 1
            else "TOO SLOW: training would wait whenever images are decoded"
        )
        rows.append(
            (
                "data: JPEG decode + preprocess images/s",
                f"{pipeline['images_per_s']:.1f} ({pipeline['pipeline']}; "
                f"{pipeline['num_files']} files of "
                f"{pipeline['file_size']} px to {pipeline['image_size']} px; "
                f"{pipeline['ratio']:.2f}x the train step's "
                f"{pipeline['train_images_per_s']:.1f} images/s: {verdict})",
            )
        )
    rows.append(("memory: peak RSS", f"{result['memory']['peak_rss_mb']:.0f} MiB"))
    if result["memory"].get("accelerator_peak_mb") is not None:
        rows.append(("memory: GPU peak", f"{result['memory']['accelerator_peak_mb']:.0f} MiB"))
    rows.append(("FLOPs: forward per image", _si(flops["per_image"], "FLOP")))
    if flops["achieved_per_s"] is not None:
        rows.append(("FLOPs: training achieved", _si(flops["achieved_per_s"], "FLOP/s")))
    if flops["matmul_per_s"] is not None:
        rows.append(
            (
                "FLOPs: float32 matmul",
                _si(flops["matmul_per_s"], "FLOP/s")
                + f" ({flops['matmul_size']}x{flops['matmul_size']}; best of "
                f"{_si(flops['matmul_per_s_first'], 'FLOP/s')} first and "
                f"{_si(flops['matmul_per_s_last'], 'FLOP/s')} last)",
            )
        )
    if flops["utilization"] is not None:
        rows.append(
            ("FLOPs: training utilization", f"{100.0 * flops['utilization']:.1f} % of the matmul")
        )
    for part, reason in skipped.items():
        rows.append((f"skipped: {part}", reason))
    load = result["machine_load"]
    if "other_processes_cpu_share" in load:
        share = load["other_processes_cpu_share"]
        rows.append(
            (
                "other processes' CPU share",
                f"{100.0 * share:.0f} %"
                f" (steal {100.0 * load['steal_share']:.0f} %) over "
                f"{load['wall_s']:.0f} s; timings are noisy if this is not near 0",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def format_backends_table(result):
    """The table of a ``--backends`` comparison: medians per backend, ratios to TensorFlow."""
    config = result["config"]
    lines = [
        f"train step per backend: {config['image_size']} px, widths {config['widths']}, "
        f"block_depth {config['block_depth']}, batch {result['batch_size']}; "
        f"{result['train_steps']} timed steps, median of {result['rounds']} round(s) "
        "in turns"
    ]
    rows = []
    for backend, entry in result["backends"].items():
        label = BACKEND_LABELS[backend]
        if "images_per_s" not in entry:
            rows.append((label, "FAILED: " + "; ".join(entry["errors"])))
            continue
        text = (
            f"{entry['images_per_s']:.2f} images/s ({entry['step_s']:.3f} s/step, first "
            f"step {entry['first_step_s']:.1f} s, {entry['compiler']}; "
            f"{entry['pipelined_images_per_s']:.2f} pipelined)"
        )
        if "ratio_to_tensorflow" in entry:
            text += f"; {entry['ratio_to_tensorflow']:.2f}x TensorFlow's"
            if backend != "tensorflow":
                text += " (within 1.5x)" if entry["within_parity"] else " (NOT within 1.5x)"
        rows.append((label, text))
        mixed = entry.get("mixed")
        if mixed and "skipped" in mixed:
            rows.append((f"{label} {mixed['precision']}", f"not measured: {mixed['skipped']}"))
        elif mixed:
            text = f"{mixed['images_per_s']:.2f} images/s"
            if "ratio_to_tensorflow" in mixed:
                text += f"; {mixed['ratio_to_tensorflow']:.2f}x TensorFlow's"
            rows.append((f"{label} {mixed['precision']}", text))
        if entry["errors"]:
            rows.append((f"{label} errors", "; ".join(entry["errors"])))
    load = result["machine_load"]
    if "other_processes_cpu_share" in load:
        rows.append(
            (
                "other processes' CPU share",
                f"{100.0 * load['other_processes_cpu_share']:.0f} % over {load['wall_s']:.0f} s",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(lines + [f"{name:<{width}}  {value}" for name, value in rows])
