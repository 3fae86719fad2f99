"""Holds the Elastic Beanstalk simulator to AWS's own model: every Query-protocol answer it sent
(a JSON list of {"action", "status", "body"}) is read against botocore's service model for the
operation — the one the aws CLI itself parses with. botocore silently drops an element it does
not know, so a misspelt element would pass through the CLI unseen; here it fails.

Checked: the envelope (<Op>Response, <Op>Result, ResponseMetadata/RequestId); every element a
member of its shape (lists as <member>); every required member present; leaf values by type
(integer, long, boolean, timestamp, double) and enum; errors as <ErrorResponse><Error> with a
Code and a Message.

    python3 scripts/check-eb-model.py RESPONSES.json    (exit 1 naming each departure)
"""

import datetime
import json
import sys
import xml.etree.ElementTree as ET

try:
    from botocore import session as boto_session  # a botocore of its own
except ImportError:  # awscli v1 carries its own copy
    from awscli.botocore import session as boto_session

SESSION = boto_session.get_session()
MODELS = {name: SESSION.get_service_model(name) for name in ("elasticbeanstalk", "sts")}
SERVICE_OF = {"GetCallerIdentity": "sts"}


def local(tag):
    return tag.split("}", 1)[-1]


def timestamp(text):
    t = text.strip().replace("Z", "+00:00")
    datetime.datetime.fromisoformat(t)


def walk(shape, el, path, out):
    kind = shape.type_name
    if kind == "structure":
        names = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
        seen = set()
        for child in el:
            tag = local(child.tag)
            if tag not in names:
                out.append(f"{path}/{tag}: not a member of {shape.name} (members: {', '.join(sorted(names))})")
                continue
            seen.add(names[tag][0])
            walk(names[tag][1], child, f"{path}/{tag}", out)
        for req in shape.required_members:
            if req not in seen:
                out.append(f"{path}: {shape.name} requires {req}")
    elif kind == "list":
        name = shape.member.serialization.get("name", "member")
        for i, child in enumerate(el):
            if local(child.tag) != name:
                out.append(f"{path}/{local(child.tag)}: a {shape.name} holds <{name}> elements")
                continue
            walk(shape.member, child, f"{path}/{name}[{i}]", out)
    elif kind == "map":
        for child in el:
            if local(child.tag) != "entry":
                out.append(f"{path}/{local(child.tag)}: a map holds <entry> elements")
    else:
        if len(el):
            out.append(f"{path}: a {kind} has no child elements")
            return
        text = el.text or ""
        try:
            if kind in ("integer", "long"):
                int(text)
            elif kind == "boolean":
                if text not in ("true", "false"):
                    raise ValueError(text)
            elif kind == "timestamp":
                timestamp(text)
            elif kind in ("double", "float"):
                float(text)
        except ValueError:
            out.append(f"{path}: {text!r} is not a {kind}")
        if kind == "string" and shape.enum and text not in shape.enum:
            out.append(f"{path}: {text!r} is not one of {shape.name}'s values {shape.enum}")


def check(action, status, body):
    out = []
    service = SERVICE_OF.get(action, "elasticbeanstalk")
    model = MODELS[service]
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        return [f"{action}: not XML: {e}"]
    if status >= 400:
        if local(root.tag) != "ErrorResponse":
            return [f"{action}: an error answer ({status}) is <ErrorResponse>, not <{local(root.tag)}>"]
        err = root.find("{*}Error")
        if err is None:
            return [f"{action}: <ErrorResponse> without <Error>"]
        fields = {local(c.tag): (c.text or "") for c in err}
        for need in ("Code", "Message"):
            if not fields.get(need):
                out.append(f"{action}: <Error> without <{need}>")
        for tag in fields:
            if tag not in ("Type", "Code", "Message"):
                out.append(f"{action}: <Error><{tag}> is not part of an AWS Query error")
        return out
    if action not in model.operation_names:
        return [f"{action}: not an operation of {service}"]
    op = model.operation_model(action)
    if local(root.tag) != f"{action}Response":
        return [f"{action}: the answer is <{local(root.tag)}>, expected <{action}Response>"]
    children = {local(c.tag): c for c in root}
    if "ResponseMetadata" not in children or children["ResponseMetadata"].find("{*}RequestId") is None:
        out.append(f"{action}: no ResponseMetadata/RequestId")
    shape = op.output_shape
    wrapper = shape.serialization.get("resultWrapper") if shape is not None else None
    extra = set(children) - {"ResponseMetadata", wrapper}
    if extra:
        out.append(f"{action}: unexpected element(s) {sorted(extra)} in <{action}Response>")
    if shape is not None:
        result = children.get(wrapper)
        if result is None:
            out.append(f"{action}: no <{wrapper}>")
        else:
            walk(shape, result, f"{action}/{wrapper}", out)
    return out


def main():
    responses = json.load(open(sys.argv[1]))
    problems = []
    for r in responses:
        problems += check(r["action"], r["status"], r["body"])
    for p in problems:
        print(p)
    actions = sorted({r["action"] for r in responses})
    print(f"checked {len(responses)} answer(s) of {len(actions)} operation(s) against botocore's model: "
          f"{len(problems)} departure(s)", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
