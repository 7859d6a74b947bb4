"""The client's pydantic models against the node's own OpenAPI document,
field by field: every field a model declares is in the document, with a
type the document allows, and a field the model requires is one the
document says every answer carries. A model copied by hand can drift from
the Rust types; this is where it shows."""

from __future__ import annotations

import types
import typing

import pytest
from pydantic import BaseModel

from iris_client import models

from conftest import Node

# Model -> the schema it reads; the others have the same name.
RENAMED = {"JobView": "Job"}
JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean",
              list: "array", dict: "object", type(None): "null"}


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("document"), "doc").start()
    try:
        yield node.net._call("GET", "/v1/openapi.json")
    finally:
        node.stop()


def model_classes():
    return [value for value in vars(models).values()
            if isinstance(value, type) and issubclass(value, BaseModel)
            and value.__module__ == models.__name__ and not value.__name__.startswith("_")]


def resolve(document, schema):
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def properties(document, schema):
    """A schema's properties and required names, through $ref and allOf,
    and what every member of a oneOf has."""
    schema = resolve(document, schema)
    props, required = dict(schema.get("properties", {})), set(schema.get("required", []))
    for part in schema.get("allOf", []):
        more, needed = properties(document, part)
        props.update(more)
        required |= needed
    members = [properties(document, part) for part in schema.get("oneOf", [])]
    if members:
        shared = set.intersection(*(set(p) for p, _ in members))
        for p, needed in members:
            props.update({name: p[name] for name in shared})
        required |= set.intersection(*(needed for _, needed in members))
    return props, required


def schema_types(document, schema):
    """The JSON types a property's schema allows."""
    if "$ref" in schema:
        target = resolve(document, schema)
        if "type" in target or "enum" in target:
            return schema_types(document, target)
        return {"object"}
    found = set()
    for key in ("oneOf", "anyOf", "allOf"):
        for part in schema.get(key, []):
            found |= schema_types(document, part)
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found |= set(kind)
    if "enum" in schema and not kind:
        found |= {JSON_TYPES[type(v)] for v in schema["enum"]}
    return found


def python_types(annotation):
    """The JSON types a model's field takes."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(python_types(arg) for arg in typing.get_args(annotation)))
    if origin is not None:
        return {JSON_TYPES[origin]}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"object"}
    return {JSON_TYPES[annotation]}


@pytest.mark.parametrize("model", model_classes(), ids=lambda m: m.__name__)
def test_every_field_of_a_model_is_in_the_document_as_it_says(document, model):
    name = RENAMED.get(model.__name__, model.__name__)
    assert name in document["components"]["schemas"], f"no schema {name} for {model.__name__}"
    props, required = properties(document, {"$ref": f"#/components/schemas/{name}"})
    for field_name, field in model.model_fields.items():
        key = field.alias or field_name
        assert key in props, f"{model.__name__}.{key} is not in the document's {name}"
        allowed = schema_types(document, props[key])
        wanted = python_types(field.annotation)
        for kind in wanted - {"null"}:
            assert kind in allowed or (kind == "number" and "integer" in allowed), (
                f"{model.__name__}.{key} reads {kind}; the document says {sorted(allowed)}")
        if "null" in allowed:
            assert "null" in wanted or not field.is_required(), (
                f"{model.__name__}.{key} cannot be null, but the document allows it")
        if field.is_required():
            assert key in required, (
                f"{model.__name__}.{key} is required here but optional in the document's {name}")
