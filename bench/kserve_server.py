"""The comparison server for the benchmark: KServe's own `kserve.ModelServer` with a
predictor that calls `torch.jit.load` on the same TorchScript file the runtime serves.

It is what a KServe user writes by following KServe's custom-model guide: one Model
subclass, synchronous `predict`, default server settings (one worker). Runs in the
separate bench venv (.cache/bench-venv, made by scripts/bench.sh):

    .cache/bench-venv/bin/python bench/kserve_server.py --model_name mlp \
        --model_path examples/models/mlp/1/model.pt --http_port 8090 --grpc_port 8091

KServe's own flags (`--http_port`, `--grpc_port`, `--workers`, ...) are read by
`kserve.model_server` at import time; this script adds `--model_path`
and `--output_name` (KServe's `--model_name` names the model).
"""

import argparse
import importlib.metadata

import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.model_server import parser as kserve_parser
from kserve.utils.utils import generate_uuid


class TorchScriptModel(Model):
    """Runs a TorchScript module on the request's first input tensor."""

    def __init__(self, name: str, path: str, output_name: str):
        super().__init__(name)
        self.path = path
        self.output_name = output_name
        self.module = None
        self.load()

    def load(self) -> bool:
        self.module = torch.jit.load(self.path, map_location="cpu").eval()
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        batch = torch.from_numpy(payload.inputs[0].as_numpy())
        with torch.no_grad():
            result = self.module(batch).numpy()
        output = InferOutput(name=self.output_name, shape=list(result.shape), datatype="FP32")
        output.set_data_from_numpy(result, binary_data=False)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=[output],
        )


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve_parser])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--output_name", default="logits")
    args, _ = parser.parse_known_args()
    model = TorchScriptModel(args.model_name, args.model_path, args.output_name)
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port).start([model])


if __name__ == "__main__":
    print(f"kserve {importlib.metadata.version('kserve')}, torch {torch.__version__}", flush=True)
    main()
