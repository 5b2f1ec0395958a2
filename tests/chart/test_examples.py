"""The manifests people copy are valid: every cloudphone.io object of examples/ (the scheduled fleet's
phones as its script writes them included) and of the YAML blocks of the walkthrough and the lifecycles
page, against the generated CRDs' schemas, with unknown fields refused as kubectl's strict field
validation refuses them. The CRDs' CEL rules are the API server's: tests/it/crd.rs reads the scheduled
fleet's schedule and phones with the operator's own types and rules."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from render import ROOT

EXAMPLES = ROOT / "examples"
# Pages whose ```yaml blocks are whole objects to apply (blocks that are only a `spec:` fragment are
# left out: they name no apiVersion).
PAGES = [ROOT / "docs" / "guides" / "scheduled-fleet.md", ROOT / "docs" / "concepts" / "lifecycles.md"]
# Objects of examples/cloudphones.yaml that the schema refuses on purpose (the demo shows the
# operator refusing what slipped past it).
REFUSED_ON_PURPOSE = {"bad-instance-id"}


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused wherever it lists the fields (kubectl apply's default
    server-side field validation, Strict, refuses them; jsonschema alone would let a misspelt
    `prewarmlead` through)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    # NB: the root lists only spec and status: apiVersion, kind and metadata are the API server's.
    walk(schema.get("properties", {}))
    return schema


def schemas() -> dict[str, dict[str, Any]]:
    """Each kind's schema, from crds/."""
    out = {}
    for path in sorted((ROOT / "crds").glob("cloudphone.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        out[kind] = strict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return out


def cloudphone_objects(docs: list[Any]) -> list[dict[str, Any]]:
    return [d for d in docs if isinstance(d, dict) and str(d.get("apiVersion", "")).startswith("cloudphone.io/")]


def generated_phones(ids: list[str]) -> list[dict[str, Any]]:
    script = EXAMPLES / "scheduled-fleet" / "phones.sh"
    out = subprocess.run(["sh", str(script)], input="\n".join(ids), capture_output=True, text=True, check=True)
    return list(yaml.safe_load_all(out.stdout))


def example_objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for obj in cloudphone_objects(list(yaml.safe_load_all(path.read_text()))):
            found.append((str(path.relative_to(ROOT)), obj))
    for obj in generated_phones(["a44uhlf7", "b55vimg8", "c66wjnh9"]):
        found.append(("examples/scheduled-fleet/phones.sh", obj))
    return found


def page_objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for page in PAGES:
        for block in re.findall(r"^```yaml\n(.*?)^```", page.read_text(), flags=re.M | re.S):
            for obj in cloudphone_objects(list(yaml.safe_load_all(block))):
                found.append((str(page.relative_to(ROOT)), obj))
    return found


def test_the_examples_and_the_walkthrough_hold_the_objects_they_promise():
    kinds = {obj["kind"] for _, obj in example_objects()}
    assert {"CloudPhone", "CloudPhoneSchedule", "CloudPhoneAccount"} <= kinds
    assert len(generated_phones([f"id{i}" for i in range(1000)])) == 1000
    page_kinds = {(where, obj["kind"]) for where, obj in page_objects()}
    assert ("docs/guides/scheduled-fleet.md", "CloudPhoneSchedule") in page_kinds
    assert ("docs/concepts/lifecycles.md", "CloudPhoneSchedule") in page_kinds


@pytest.mark.parametrize(
    "where,obj",
    example_objects() + page_objects(),
    ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}",
)
def test_each_object_is_valid_against_its_crd(where: str, obj: dict[str, Any]):
    schema = schemas()[obj["kind"]]
    if obj["metadata"]["name"] in REFUSED_ON_PURPOSE:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(obj, schema)
        return
    jsonschema.validate(obj, schema)


def test_a_misspelt_field_is_refused():
    schema = schemas()["CloudPhoneSchedule"]
    (obj,) = [o for _, o in example_objects() if o["kind"] == "CloudPhoneSchedule"]
    bad = copy.deepcopy(obj)
    bad["spec"]["prewarmlead"] = bad["spec"].pop("prewarmLead")
    with pytest.raises(jsonschema.ValidationError, match="prewarmlead"):
        jsonschema.validate(bad, schema)
