"""Delegate-compatibility report of a .tflite file: which ops the TFLite GPU delegate and NNAPI can take, and how
many XNNPACK partitions LiteRT makes on this machine.

Why tables in code: `tf.lite.experimental.Analyzer.analyze(gpu_compatibility=True)` is unreliable in TF 2.21 (it
passes ops the delegate rejects at run time and vice versa), and there is no GPU on these machines to ask. The
tables below transcribe the delegates' own checks:

- GPU: tensorflow/lite/tools/versioning/gpu_compatibility.cc, `CheckGpuDelegateCompatibility` (the logic that
  used to live in delegates/gpu/common/model_builder.cc `IsSupported`): supported builtin ops, fused activations
  (`IsActivationSupported`), at most 4-D tensors, constant conv weights, DEPTH_TO_SPACE block_size > 1,
  RESIZE_BILINEAR not (align_corners and half_pixel_centers). Quantised (int8) models run on the GPU delegate by
  dequantising on the fly (delegates/gpu README, "Quantized models"); int16 activations are not supported.
- NNAPI: tensorflow/lite/delegates/nnapi/nnapi_delegate.cc `NNAPIDelegateKernel::Validate` (minimum Android API
  level per op); signed int8 tensors (TENSOR_QUANT8_ASYMM_SIGNED) need NNAPI 1.3 = API 30.
- XNNPACK: measured, not tabled: the interpreter's node list after delegation (`DELEGATE` nodes = partitions; ops
  feeding a partition from outside a partition are the ones XNNPACK refused).

`report(path)` returns a dict, `write_report` puts it beside the artifact as `<name>.delegates.json`, `format_table`
prints it. `mask2face export` writes one per artifact.
"""

from __future__ import annotations

from pathlib import Path

SOURCES = {
    "gpu": "tensorflow/lite/tools/versioning/gpu_compatibility.cc (CheckGpuDelegateCompatibility), TF 2.16-2.21",
    "nnapi": "tensorflow/lite/delegates/nnapi/nnapi_delegate.cc (NNAPIDelegateKernel::Validate), TF 2.16-2.21",
    "xnnpack": "measured: ai_edge_litert Interpreter node list after the default XNNPACK delegate is applied",
}

# GPU delegate: builtin ops with a parser (gpu_compatibility.cc switch cases).
GPU_OPS = frozenset("""
ADD ADD_N AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D CUMSUM DENSIFY DEPTHWISE_CONV_2D DEPTH_TO_SPACE
DEQUANTIZE DYNAMIC_UPDATE_SLICE EMBEDDING_LOOKUP FULLY_CONNECTED GATHER HARD_SWISH LSTM MAX_POOL_2D MEAN MUL PACK
ONE_HOT QUANTIZE RELU_N1_TO_1 PRELU RESHAPE SELECT SELECT_V2 SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V
STRIDED_SLICE TILE TRANSPOSE TRANSPOSE_CONV RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RELU RELU6 LEAKY_RELU
REDUCE_MAX REDUCE_MIN REDUCE_PROD SUM PAD PADV2 MIRROR_PAD ABS CEIL COS ELU EXP FLOOR GELU LOG LOGISTIC NEG RSQRT
SIGN SIN SQRT SQUARE TANH ATAN2 DIV EQUAL FLOOR_DIV FLOOR_MOD GREATER GREATER_EQUAL LOGICAL_AND LESS LESS_EQUAL
MAXIMUM MINIMUM NOT_EQUAL POW SQUARED_DIFFERENCE SUB STABLEHLO_CLAMP
""".split())
# IsActivationSupported: NONE, RELU, RELU_N1_TO_1, RELU6, TANH, SIGMOID pass; SIGN_BIT does not.
GPU_ACTIVATIONS = frozenset({"NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGMOID"})
GPU_TYPES = frozenset({"FLOAT32", "FLOAT16", "INT8", "UINT8", "INT32", "BOOL"})

# NNAPI: op -> minimum Android API level (Validate's ExpectMinAndroidSdkVersion / ExpectOpVersion checks).
NNAPI_OPS = {
    "ADD": 27, "AVERAGE_POOL_2D": 27, "CONCATENATION": 27, "CONV_2D": 27, "DEPTHWISE_CONV_2D": 27,
    "DEPTH_TO_SPACE": 27, "DEQUANTIZE": 27, "EMBEDDING_LOOKUP": 27, "FLOOR": 27, "FULLY_CONNECTED": 27,
    "HASHTABLE_LOOKUP": 27, "L2_NORMALIZATION": 27, "L2_POOL_2D": 27, "LOCAL_RESPONSE_NORMALIZATION": 27,
    "LOGISTIC": 27, "LSH_PROJECTION": 27, "LSTM": 27, "MAX_POOL_2D": 27, "MUL": 27, "RELU": 27, "RELU_N1_TO_1": 27,
    "RELU6": 27, "RESHAPE": 27, "RESIZE_BILINEAR": 27, "RNN": 27, "SOFTMAX": 27, "SPACE_TO_DEPTH": 27, "SVDF": 27,
    "TANH": 27,
    "BATCH_TO_SPACE_ND": 28, "DIV": 28, "MEAN": 28, "PAD": 28, "SPACE_TO_BATCH_ND": 28, "SQUEEZE": 28,
    "STRIDED_SLICE": 28, "SUB": 28, "TRANSPOSE": 28,
    "ABS": 29, "ARG_MAX": 29, "ARG_MIN": 29, "CAST": 29, "EQUAL": 29, "EXP": 29, "EXPAND_DIMS": 29, "GATHER": 29,
    "GREATER": 29, "GREATER_EQUAL": 29, "HARD_SWISH": 29, "LEAKY_RELU": 29, "LESS": 29, "LESS_EQUAL": 29, "LOG": 29,
    "LOGICAL_AND": 29, "LOGICAL_NOT": 29, "LOGICAL_OR": 29, "MAXIMUM": 29, "MINIMUM": 29, "NEG": 29,
    "NOT_EQUAL": 29, "PADV2": 29, "POW": 29, "PRELU": 29, "QUANTIZE": 29, "REDUCE_MAX": 29, "REDUCE_MIN": 29,
    "REDUCE_PROD": 29, "RESIZE_NEAREST_NEIGHBOR": 29, "RSQRT": 29, "SELECT": 29, "SIN": 29, "SLICE": 29,
    "SPLIT": 29, "SQRT": 29, "SUM": 29, "TILE": 29, "TOPK_V2": 29, "TRANSPOSE_CONV": 29, "MIRROR_PAD": 30,
    "ELU": 30, "FILL": 30, "PACK": 30, "QUANTIZED_LSTM": 30, "RANK": 30, "SPLIT_V": 30, "SQUARED_DIFFERENCE": 29,
    "BATCH_MATMUL": 31,
}
NNAPI_INT8_API = 30   # TENSOR_QUANT8_ASYMM_SIGNED (NNAPI 1.3)


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def parse_ops(model_bytes: bytes) -> list[dict]:
    """Every op of the main subgraph with what the delegate checks need: name, fused activation, runtime/const
    input counts, tensor ranks and types, a few options (block_size, align_corners/half_pixel_centers)."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.python import schema_util

    ops_names = _enum_names(fb.BuiltinOperator)
    type_names = _enum_names(fb.TensorType)
    act_names = _enum_names(fb.ActivationFunctionType)
    model = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    sg = model.subgraphs[0]

    def is_const(t):
        tensor = sg.tensors[t]
        buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
        return buf is not None and ((buf.data is not None and len(buf.data)) or (buf.offset or 0) > 1)

    # fp16 models feed weights through DEQUANTIZE(fp16 constant): the GPU delegate folds those into constants
    # (model_builder.cc, "dequantize fp16 constants"), so their outputs count as constant inputs.
    const_dequant = set()
    for op in sg.operators or []:
        if ops_names.get(schema_util.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])) \
                == "DEQUANTIZE" and op.inputs is not None and is_const(op.inputs[0]):
            const_dequant.update(int(t) for t in op.outputs)

    def is_const_or_folded(t):
        return is_const(t) or t in const_dequant

    out = []
    for index, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        code = schema_util.get_builtin_code_from_operator_code(oc)
        name = ops_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            name = f"CUSTOM:{oc.customCode.decode() if isinstance(oc.customCode, bytes) else oc.customCode}"
        inputs = [t for t in (op.inputs if op.inputs is not None else []) if t >= 0]
        outputs = list(op.outputs if op.outputs is not None else [])
        opts = op.builtinOptions
        act = getattr(opts, "fusedActivationFunction", None)
        info = {
            "index": index, "op": name,
            "activation": act_names.get(act) if act is not None else None,
            "runtime_inputs": sum(1 for t in inputs if not is_const_or_folded(t)),
            "const_inputs": sum(1 for t in inputs if is_const_or_folded(t)),
            "max_rank": max([len(sg.tensors[t].shape if sg.tensors[t].shape is not None else [])
                             for t in inputs + outputs] or [0]),
            "types": sorted({type_names.get(sg.tensors[t].type, "?") for t in inputs + outputs}),
        }
        for key in ("blockSize", "alignCorners", "halfPixelCenters", "strideH", "strideW"):
            if opts is not None and hasattr(opts, key):
                info[key] = getattr(opts, key)
        out.append(info)
    return out


def gpu_verdict(op: dict) -> str | None:
    """None when the GPU delegate takes the op, else the reason (after gpu_compatibility.cc)."""
    name = op["op"]
    if name not in GPU_OPS:
        return f"Not supported op {name}"
    if op["max_rank"] > 4:
        return f"{op['max_rank']}-D tensor: the GPU delegate handles at most 4-D"
    bad = [t for t in op["types"] if t not in GPU_TYPES]
    if bad:
        return f"tensor type {', '.join(bad)} is not supported"
    if op["activation"] is not None and op["activation"] not in GPU_ACTIVATIONS:
        return f"fused activation {op['activation']} is not supported"
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV") and op["runtime_inputs"] != 1:
        return f"{name} needs constant weights (exactly 1 runtime input, got {op['runtime_inputs']})"
    if name in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH") and op.get("blockSize", 2) <= 1:
        return f"{name} block_size must be > 1"
    if name == "RESIZE_BILINEAR" and op.get("alignCorners") and op.get("halfPixelCenters"):
        return "RESIZE_BILINEAR with align_corners and half_pixel_centers both set"
    if name in ("ADD", "MUL") and op["runtime_inputs"] + op["const_inputs"] != 2:
        return f"{name} requires two input tensors"
    return None


def nnapi_verdict(op: dict) -> tuple[int | None, str | None]:
    """(minimum Android API level, reason it is unsupported or None)."""
    name = op["op"]
    if name not in NNAPI_OPS:
        return None, f"{name} is not mapped by the NNAPI delegate"
    api = NNAPI_OPS[name]
    if "INT8" in op["types"]:
        api = max(api, NNAPI_INT8_API)
    if op["max_rank"] > 4:
        return None, f"{op['max_rank']}-D tensors"
    return api, None


def xnnpack_partitions(model_bytes: bytes, num_threads: int = 1) -> dict:
    """Count XNNPACK partitions and the ops left on builtin kernels, from the interpreter's node list."""
    from mask2face.edge_runtime.model import new_interpreter

    it = new_interpreter(bytes(model_bytes), num_threads)
    nodes = it._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    if not delegates:
        return {"partitions": 0, "undelegated_ops": [n["op_name"] for n in originals]}
    producer = {int(t): n for n in originals for t in n["outputs"]}
    delegate_inputs = {int(t) for d in delegates for t in d["inputs"]}
    delegate_outputs = {int(t) for d in delegates for t in d["outputs"]}
    model_outputs = {int(o["index"]) for o in it.get_output_details()}
    # A node runs outside the delegate if its output feeds a partition or is a model output not produced by a
    # partition; inputs of such nodes that come from other original nodes (not partitions) are outside too.
    outside = {producer[t]["index"] for t in (delegate_inputs | model_outputs) - delegate_outputs if t in producer}
    by_index = {n["index"]: n for n in originals}
    frontier = list(outside)
    while frontier:
        for t in by_index[frontier.pop()]["inputs"]:
            t = int(t)
            if t in producer and t not in delegate_outputs and producer[t]["index"] not in outside:
                outside.add(producer[t]["index"])
                frontier.append(producer[t]["index"])
    return {"partitions": len(delegates),
            "undelegated_ops": [n["op_name"] for n in originals if n["index"] in outside]}


def report(path_or_bytes, *, name: str | None = None) -> dict:
    data = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else bytes(path_or_bytes)
    ops = parse_ops(data)
    rows = []
    for op in ops:
        gpu = gpu_verdict(op)
        api, nn = nnapi_verdict(op)
        rows.append({"index": op["index"], "op": op["op"], "activation": op["activation"], "types": op["types"],
                     "gpu": gpu is None, "gpu_reason": gpu, "nnapi": nn is None, "nnapi_min_api": api,
                     "nnapi_reason": nn})
    xnn = xnnpack_partitions(data)
    gpu_bad = sorted({r["op"] for r in rows if not r["gpu"]})
    nn_bad = sorted({r["op"] for r in rows if not r["nnapi"]})
    return {
        "artifact": name or (str(path_or_bytes) if isinstance(path_or_bytes, (str, Path)) else None),
        "ops": rows,
        "op_counts": {k: sum(1 for r in rows if r["op"] == k) for k in sorted({r["op"] for r in rows})},
        "gpu_compatible": not gpu_bad, "gpu_unsupported_ops": gpu_bad,
        "nnapi_compatible": not nn_bad, "nnapi_unsupported_ops": nn_bad,
        "nnapi_min_api": max([r["nnapi_min_api"] or 0 for r in rows] or [0]) or None,
        "xnnpack_partitions": xnn["partitions"], "xnnpack_undelegated_ops": xnn["undelegated_ops"],
        "sources": SOURCES,
    }


def format_table(rep: dict) -> str:
    lines = [f"delegate report: {rep['artifact']}",
             f"{'op':<26}{'count':>6}  {'GPU':<5}{'NNAPI':<7}reason"]
    seen = {}
    for r in rep["ops"]:
        seen.setdefault(r["op"], r)
    for op, r in seen.items():
        reason = r["gpu_reason"] or r["nnapi_reason"] or ""
        lines.append(f"{op:<26}{rep['op_counts'][op]:>6}  {'yes' if r['gpu'] else 'NO':<5}"
                     f"{(str(r['nnapi_min_api']) if r['nnapi'] else 'NO'):<7}{reason}")
    lines.append(f"GPU: {'fully compatible' if rep['gpu_compatible'] else 'NOT compatible: ' + ', '.join(rep['gpu_unsupported_ops'])}"
                 f" | NNAPI: {'API >= ' + str(rep['nnapi_min_api']) if rep['nnapi_compatible'] else 'NOT: ' + ', '.join(rep['nnapi_unsupported_ops'])}"
                 f" | XNNPACK partitions: {rep['xnnpack_partitions']}"
                 + (f" (on builtin kernels: {', '.join(rep['xnnpack_undelegated_ops'])})"
                    if rep["xnnpack_undelegated_ops"] else ""))
    return "\n".join(lines)


def write_report(tflite_path: str | Path) -> tuple[Path, dict]:
    from mask2face.runs import write_json

    tflite_path = Path(tflite_path)
    rep = report(tflite_path, name=tflite_path.name)
    out = tflite_path.with_suffix(".delegates.json")
    write_json(out, rep)
    return out, rep


def main(argv=None) -> int:  # python -m mask2face.compress.delegates FILE.tflite ...
    import sys

    for p in (argv if argv is not None else sys.argv[1:]):
        print(format_table(report(p)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


