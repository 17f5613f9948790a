"""Writes the Grafana dashboards (runtime.json, operator.json) from the panel lists below.
Run after editing them (`python charts/modelplane/dashboards/render.py`); the tests fail
while a JSON file is stale, and fail on any query naming a metric the code does not export."""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
RATE = "[$__rate_interval]"
SEL = 'namespace=~"$namespace", model=~"$model"'


def q(expr: str, legend: str) -> dict:
    return {"expr": expr, "legendFormat": legend}


def quantile(p: str, metric: str, by: str, sel: str = SEL) -> str:
    return f"histogram_quantile({p}, sum by (le, {by}) (rate({metric}_bucket{{{sel}}}{RATE})))"


def ratio(num: str, den: str) -> str:
    return f"({num}) / clamp_min({den}, 1e-9)"


RUNTIME = [
    ("Requests", "Serving", "reqps", [
        q(f"sum by (model, version, outcome) (rate(modelplane_requests_total{{{SEL}}}{RATE}))", "{{model}} {{version}} {{outcome}}")]),
    ("Error ratio", "Serving", "percentunit", [
        q(ratio(f'sum by (model, version) (rate(modelplane_requests_total{{{SEL}, outcome=~"internal|deadline_exceeded"}}{RATE}))',
                f"sum by (model, version) (rate(modelplane_requests_total{{{SEL}}}{RATE}))"), "{{model}} {{version}}")]),
    ("Request latency", "Serving", "s", [
        q(quantile("0.5", "modelplane_request_duration_seconds", "model, version"), "p50 {{model}} {{version}}"),
        q(quantile("0.99", "modelplane_request_duration_seconds", "model, version"), "p99 {{model}} {{version}}")]),
    ("Requests per tenant", "Serving", "reqps", [
        q(f"sum by (tenant, outcome) (rate(modelplane_requests_total{{{SEL}}}{RATE}))", "{{tenant}} {{outcome}}")]),
    ("Queue and in flight", "Batching", "short", [
        q(f"sum by (model) (modelplane_queue_length{{{SEL}}})", "queued {{model}}"),
        q(f"sum by (model) (modelplane_in_flight{{{SEL}}})", "in flight {{model}}")]),
    ("Queue wait p99", "Batching", "s", [
        q(quantile("0.99", "modelplane_queue_duration_seconds", "model"), "{{model}}")]),
    ("Batch size", "Batching", "short", [
        q(quantile("0.5", "modelplane_batch_size", "model"), "p50 {{model}}"),
        q(quantile("0.99", "modelplane_batch_size", "model"), "p99 {{model}}")]),
    ("Compute time p99", "Batching", "s", [
        q(quantile("0.99", "modelplane_compute_duration_seconds", "model"), "{{model}}")]),
    ("Time to first token", "Generation", "s", [
        q(quantile("0.5", "gen_ai_server_time_to_first_token_seconds", "model, version"), "p50 {{model}} {{version}}"),
        q(quantile("0.95", "gen_ai_server_time_to_first_token_seconds", "model, version"), "p95 {{model}} {{version}}")]),
    ("Time per output token", "Generation", "s", [
        q(quantile("0.5", "gen_ai_server_time_per_output_token_seconds", "model, version"), "p50 {{model}} {{version}}"),
        q(quantile("0.95", "gen_ai_server_time_per_output_token_seconds", "model, version"), "p95 {{model}} {{version}}")]),
    ("Tokens per second", "Generation", "short", [
        q(f"sum by (model, version, gen_ai_token_type) (rate(modelplane_generate_tokens_total{{{SEL}}}{RATE}))", "{{gen_ai_token_type}} {{model}} {{version}}")]),
    ("Generation requests", "Generation", "reqps", [
        q(f"sum by (model, outcome) (rate(modelplane_generate_requests_total{{{SEL}}}{RATE}))", "{{model}} {{outcome}}"),
        q(f"sum by (model) (rate(modelplane_generate_empty_outputs_total{{{SEL}}}{RATE}))", "empty {{model}}")]),
    ("Running and waiting", "Generation", "short", [
        q(f"sum by (model) (modelplane_generate_running_requests{{{SEL}}})", "running {{model}}"),
        q(f"sum by (model) (modelplane_generate_waiting_requests{{{SEL}}})", "waiting {{model}}")]),
    ("KV cache in use", "Generation", "percentunit", [
        q(ratio(f"sum by (model) (modelplane_generate_kv_cache_used_bytes{{{SEL}}})",
                f"sum by (model) (modelplane_generate_kv_cache_total_bytes{{{SEL}}})"), "{{model}}"),
        q(ratio(f"sum by (model) (modelplane_generate_kv_cache_slots_used{{{SEL}}})",
                f"sum by (model) (modelplane_generate_kv_cache_slots_total{{{SEL}}})"), "slots {{model}}")]),
    ("Prefix cache hit rate", "Generation", "percentunit", [
        q(ratio(f"sum by (model) (rate(modelplane_generate_prefix_cache_hits_total{{{SEL}}}{RATE}))",
                f"sum by (model) (rate(modelplane_generate_prefix_cache_queries_total{{{SEL}}}{RATE}))"), "{{model}}")]),
    ("Canary routing", "Versions", "reqps", [
        q(f"sum by (model, version, reason) (rate(modelplane_route_decisions_total{{{SEL}}}{RATE}))", "{{model}} {{version}} {{reason}}")]),
    ("Model state", "Versions", "short", [
        q(f"max by (model, version, state) (modelplane_model_state{{{SEL}}})", "{{model}} {{version}} {{state}}"),
        q(f"max by (model, version) (modelplane_model_load_seconds{{{SEL}}})", "load s {{model}} {{version}}")]),
    ("Config reload failures", "Versions", "short", [
        q('sum(increase(modelplane_config_reload_failures_total{namespace=~"$namespace"}[1h]))', "config"),
        q('sum(increase(modelplane_identity_reload_failures_total{namespace=~"$namespace"}[1h]))', "identity")]),
    ("CPU (cgroup)", "cgroup v2", "short", [
        q(f'sum by (pod) (rate(modelplane_cgroup_cpu_usage_seconds_total{{namespace=~"$namespace"}}{RATE}))', "cores {{pod}}"),
        q('max by (pod) (modelplane_cgroup_pressure_cpu_some_avg10{namespace=~"$namespace"})', "pressure some {{pod}}")]),
    ("Memory and I/O pressure (cgroup)", "cgroup v2", "percent", [
        q('max by (pod) (modelplane_cgroup_pressure_memory_some_avg10{namespace=~"$namespace"})', "memory some {{pod}}"),
        q('max by (pod) (modelplane_cgroup_pressure_memory_full_avg10{namespace=~"$namespace"})', "memory full {{pod}}"),
        q('max by (pod) (modelplane_cgroup_pressure_io_some_avg10{namespace=~"$namespace"})', "io some {{pod}}")]),
    ("Tenant slices", "cgroup v2", "short", [
        q('sum by (pod) (modelplane_cgroup_tenant_slices{namespace=~"$namespace"})', "{{pod}}")]),
]

OPERATOR = [
    ("Reconciles", "Controllers", "ops", [
        q(f"sum by (kind, outcome) (rate(modelplane_operator_reconciles_total{RATE}))", "{{kind}} {{outcome}}")]),
    ("Reconcile errors", "Controllers", "ops", [
        q(f'sum by (kind, outcome) (rate(modelplane_operator_reconciles_total{{outcome!="success"}}{RATE}))', "{{kind}} {{outcome}}")]),
    ("Reconcile duration p99", "Controllers", "s", [
        q(f"histogram_quantile(0.99, sum by (le, kind) (rate(modelplane_operator_reconcile_duration_seconds_bucket{RATE})))", "{{kind}}")]),
    ("Objects managed", "Controllers", "short", [
        q("max by (kind) (modelplane_operator_objects_managed)", "{{kind}}")]),
    ("Leader", "Controllers", "short", [
        q("max by (pod) (modelplane_operator_leader)", "{{pod}}")]),
    ("Verifications", "Supply chain", "ops", [
        q(f"sum by (artifact, result) (rate(modelplane_verifications_total{RATE}))", "{{artifact}} {{result}}"),
        q(f"sum by (artifact) (rate(modelplane_verification_cache_hits_total{RATE}))", "cache hits {{artifact}}")]),
    ("Verification duration p95", "Supply chain", "s", [
        q(f"histogram_quantile(0.95, sum by (le, artifact) (rate(modelplane_verification_duration_seconds_bucket{RATE})))", "{{artifact}}")]),
    ("Quota use", "Tenancy", "percentunit", [
        q("max by (quota, resource) (modelplane_operator_quota_used) / max by (quota, resource) (modelplane_operator_quota_hard)", "{{quota}} {{resource}}")]),
    ("Quota used", "Tenancy", "short", [
        q("max by (quota, resource) (modelplane_operator_quota_used)", "{{quota}} {{resource}}")]),
    ("Canary weight", "Canaries", "percent", [
        q("max by (namespace, name) (modelplane_operator_canary_weight_percent)", "{{namespace}}/{{name}}")]),
    ("Canary phase", "Canaries", "short", [
        q("max by (namespace, name, phase) (modelplane_operator_canary_phase) == 1", "{{namespace}}/{{name}} {{phase}}")]),
    ("Analysis verdicts", "Canaries", "short", [
        q("sum by (namespace, name, metric, verdict) (increase(modelplane_operator_canary_analysis_verdicts_total[1h]))", "{{name}} {{metric}} {{verdict}}")]),
]


def variable(name: str, query: str) -> dict:
    return {"name": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": query, "refresh": 2, "includeAll": True, "multi": True, "current": {}, "allValue": ".*"}


def dashboard(title: str, uid: str, panels: list, variables: list) -> dict:
    out, y, row = [], 0, None
    for index, (panel_title, group, unit, targets) in enumerate(panels):
        if group != row:
            out.append({"type": "row", "title": group, "collapsed": False, "id": 1000 + index,
                        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            y, row, column = y + 1, group, 0
        out.append({
            "type": "timeseries", "title": panel_title, "id": index + 1,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "gridPos": {"h": 8, "w": 12, "x": column * 12, "y": y},
            "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        })
        column = (column + 1) % 2
        if column == 0:
            y += 8
        if index + 1 < len(panels) and panels[index + 1][1] != group and column == 1:
            y += 8
    datasource = {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}}
    return {
        "title": title, "uid": uid, "schemaVersion": 39, "version": 1, "editable": True,
        "tags": ["modelplane"], "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [datasource] + variables}, "panels": out,
    }


def dashboards() -> dict:
    runtime_vars = [
        variable("namespace", "label_values(modelplane_requests_total, namespace)"),
        variable("model", 'label_values(modelplane_requests_total{namespace=~"$namespace"}, model)'),
    ]
    return {
        "runtime.json": dashboard("modelplane runtime", "modelplane-runtime", RUNTIME, runtime_vars),
        "operator.json": dashboard("modelplane operator", "modelplane-operator", OPERATOR, []),
    }


def text(board: dict) -> str:
    return json.dumps(board, indent=2) + "\n"


if __name__ == "__main__":
    for name, board in dashboards().items():
        (HERE / name).write_text(text(board))
        print(f"wrote {HERE / name}")
