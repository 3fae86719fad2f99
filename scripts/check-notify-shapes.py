"""Holds what safedeploy sends to Datadog and Slack (and the Datadog answers its tests serve) to
the official clients' own models: datadog-api-client's (EventCreateRequest for the events it
posts, Monitor for the monitor answers it reads, MetricsQueryResponse for the v1 metric queries,
TimeseriesFormulaQueryRequest and TimeseriesFormulaQueryResponse for the v2 formula queries) and slack_sdk's webhook client (the fields
WebhookClient.send takes). Both clients accept a field they do not know without a word, and
datadog-api-client only flags an enum value it cannot parse; here either fails.

    python3 scripts/check-notify-shapes.py SHAPES.json    (a list of {"kind", "body"})

kinds: "datadog_event", "datadog_monitor", "datadog_metrics_query", "datadog_timeseries_request",
"datadog_timeseries_response", "slack_webhook". Exit 1 naming each departure.
"""

import inspect
import json
import sys

from datadog_api_client.configuration import Configuration
from datadog_api_client.model_utils import validate_and_convert_types
from datadog_api_client.v1.model.event_create_request import EventCreateRequest
from datadog_api_client.v1.model.metrics_query_response import MetricsQueryResponse
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v2.model.timeseries_formula_query_request import TimeseriesFormulaQueryRequest
from datadog_api_client.v2.model.timeseries_formula_query_response import TimeseriesFormulaQueryResponse
from slack_sdk.webhook import WebhookClient

MODELS = {
    "datadog_event": EventCreateRequest,
    "datadog_monitor": Monitor,
    "datadog_metrics_query": MetricsQueryResponse,
    "datadog_timeseries_request": TimeseriesFormulaQueryRequest,
    "datadog_timeseries_response": TimeseriesFormulaQueryResponse,
}
SLACK_FIELDS = [p for p in inspect.signature(WebhookClient.send).parameters if p not in ("self", "headers")]
CONFIG = Configuration()


def check(kind, body):
    if not isinstance(body, dict):
        return [f"{kind}: the body is not a JSON object"]
    if kind == "slack_webhook":
        out = [f"slack_webhook: {k!r} is not a field WebhookClient.send takes ({SLACK_FIELDS})" for k in body if k not in SLACK_FIELDS]
        if not isinstance(body.get("text"), str) or not body["text"]:
            out.append("slack_webhook: no text")
        return out
    model = MODELS.get(kind)
    if model is None:
        return [f"{kind}: unknown kind"]
    out = [f"{kind}: {k!r} is not a field of {model.__name__} ({sorted(model.attribute_map)})" for k in body if k not in model.attribute_map]
    try:
        parsed = validate_and_convert_types(body, (model,), [kind], True, True, CONFIG)
    except Exception as e:  # noqa: BLE001 - the client's own refusal, said as it is
        return out + [f"{kind}: {model.__name__} refuses it: {e}"]
    if getattr(parsed, "_unparsed", False):
        out.append(f"{kind}: {model.__name__} holds a value it cannot parse (an enum outside its values): {body}")
    return out


def main():
    shapes = json.load(open(sys.argv[1]))
    problems = []
    for s in shapes:
        problems += check(s["kind"], s["body"])
    for p in problems:
        print(p)
    kinds = sorted({s["kind"] for s in shapes})
    print(f"checked {len(shapes)} body(ies) ({', '.join(kinds)}) against datadog-api-client and slack_sdk: "
          f"{len(problems)} departure(s)", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
