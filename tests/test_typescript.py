"""Generated TypeScript types: the JSON Schema converter, ``manage.py zocket_typescript``, and
proof with the real compiler (tsc from tests/js/node_modules) that the types catch mistakes.

The tsc tests skip with a reason when node or tsc is missing (``scripts/test-js`` installs it);
under CI=true they fail instead.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, Optional, Union

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pydantic import BaseModel, ConfigDict, Field, computed_field, create_model
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from tests.live import need
from zocket_django import Actor, method
from zocket_django.problems import Problem
from zocket_django.registry import registry
from zocket_django.testing import isolate_actors
from zocket_django.ts_types import Converter, doc_comment, property_key, ts_type, type_name, unique_type_names
from zocket_django.typescript import actor_schemas, generate

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "typescript"
STATIC = ROOT / "zocket_django" / "static" / "zocket_django"
TSC = ROOT / "tests" / "js" / "node_modules" / ".bin" / "tsc"
TSC_FLAGS = [
    "--noEmit",
    "--strict",
    "--pretty",
    "false",
    "--target",
    "es2022",
    "--module",
    "esnext",
    "--moduleResolution",
    "bundler",
    "--lib",
    "es2022,dom",
    "--skipDefaultLibCheck",  # TypeScript's own lib files; zocket.d.ts and the generated file are checked
]


# -- the converter, construct by construct -----------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "string"),
        ({"type": "string", "format": "date-time", "maxLength": 3}, "string"),
        ({"type": "integer"}, "number"),
        ({"type": "number"}, "number"),
        ({"type": "boolean"}, "boolean"),
        ({"type": "null"}, "null"),
        ({}, "unknown"),
        (True, "unknown"),
        (False, "never"),
        ({"title": "Only annotations", "description": "x"}, "unknown"),
        ({"type": "weird"}, "unknown"),
    ],
)
def test_scalars(schema, expected):
    assert ts_type(schema) == expected


def test_objects_required_and_optional():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string", "default": "x"}},
        "required": ["a"],
    }
    assert ts_type(schema) == '{\n  a: number;\n  /** @default "x" */\n  b?: string;\n}'
    no_default = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    assert ts_type({**no_default, "required": ["a"]}) == "{ a: number; b?: string }"
    assert ts_type({"properties": {"a": {"type": "integer"}}, "required": ["a"]}) == "{ a: number }"  # no "type"


def test_object_property_names_are_quoted_when_not_identifiers():
    schema = {"type": "object", "properties": {"with space": {}, "$ok": {}, "_x1": {}, "1st": {}, "é": {}}}
    lines = ts_type(schema).splitlines()[1:-1]
    assert lines == [
        '  "with space"?: unknown;',
        "  $ok?: unknown;",
        "  _x1?: unknown;",
        '  "1st"?: unknown;',
        '  "é"?: unknown;',
    ]
    assert property_key("default") == "default"  # keywords are fine as property names
    assert property_key('say "hi"') == '"say \\"hi\\""'


def test_long_or_documented_objects_become_blocks():
    props = {f"field_number_{i}": {"type": "string"} for i in range(5)}
    text = ts_type({"type": "object", "properties": props, "required": list(props)})
    assert text.splitlines()[0] == "{" and text.splitlines()[1] == "  field_number_0: string;"
    nested = ts_type(
        {
            "type": "object",
            "properties": {
                "outer": {"type": "object", "properties": {"inner": {"type": "integer", "description": "d"}}}
            },
        }
    )
    assert nested == "{\n  outer?: {\n    /** d */\n    inner?: number;\n  };\n}"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "object"}, "Record<string, unknown>"),
        ({"type": "object", "additionalProperties": True}, "Record<string, unknown>"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "Record<string, number>"),
        ({"additionalProperties": {"type": "array", "items": {"type": "string"}}}, "Record<string, string[]>"),
        ({"type": "object", "additionalProperties": False}, "Record<string, never>"),
        ({"type": "object", "properties": {}, "additionalProperties": False}, "Record<string, never>"),
        (
            {"type": "object", "patternProperties": {"^a": {"type": "integer"}, "^b": {"type": "string"}}},
            "Record<string, number | string>",
        ),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}, "propertyNames": {"enum": ["a", "b"]}},
            'Partial<Record<"a" | "b", number>>',
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "required": ["a"],
                "additionalProperties": True,
            },
            "{ a: number; [key: string]: unknown }",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "{ a: number }",
        ),
    ],
)
def test_dicts_and_additional_properties(schema, expected):
    assert ts_type(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "array", "items": {"type": "integer"}}, "number[]"),
        ({"type": "array"}, "unknown[]"),
        ({"items": {"type": "string"}}, "string[]"),
        ({"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}, "(number | string)[]"),
        ({"type": "array", "items": {"type": "array", "items": {"type": "boolean"}}}, "boolean[][]"),
        ({"type": "array", "items": {"type": ["string", "null"]}}, "(string | null)[]"),
    ],
)
def test_arrays(schema, expected):
    assert ts_type(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        # pydantic's tuple[int, str]
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2},
            "[number, string]",
        ),
        # tuple[()]
        ({"type": "array", "prefixItems": [], "maxItems": 0}, "[]"),
        # open tuple: extra elements of a type, or of any type
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "minItems": 1, "items": {"type": "string"}},
            "[number, ...string[]]",
        ),
        ({"type": "array", "prefixItems": [{"type": "integer"}], "minItems": 1}, "[number, ...unknown[]]"),
        ({"type": "array", "prefixItems": [{"type": "integer"}], "items": False}, "[number]"),
        # optional trailing elements
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 1, "maxItems": 2},
            "[number, string?]",
        ),
        # draft 2019 and older: items as a list
        ({"type": "array", "items": [{"type": "integer"}], "additionalItems": False}, "[number]"),
        # tuple[int, ...]
        ({"type": "array", "items": {"type": "integer"}}, "number[]"),
    ],
)
def test_tuples(schema, expected):
    assert ts_type(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, "number | string"),
        ({"oneOf": [{"type": "integer"}, {"type": "null"}]}, "number | null"),
        ({"anyOf": [{"type": "integer"}, {"type": "integer"}, {"type": "number"}]}, "number"),  # deduplicated
        ({"anyOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"type": "null"}]}, "number | string | null"),
        ({"anyOf": [{"type": "integer"}, {}]}, "unknown"),  # anything absorbs the rest
        ({"anyOf": [{"type": "integer"}, False]}, "number"),
        ({"anyOf": []}, "never"),
        ({"type": ["integer", "string", "null"]}, "number | string | null"),
        ({"allOf": [{"$ref": "#/$defs/A"}]}, "A"),
        ({"allOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}, "A & B"),
        (
            {"allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"$ref": "#/$defs/B"}]},
            "(number | string) & B",
        ),
        ({"type": "array", "items": {"allOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}}, "(A & B)[]"),
    ],
)
def test_unions_and_intersections(schema, expected):
    assert ts_type(schema, {"A": "A", "B": "B"}) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"enum": ["red", "green"], "type": "string"}, '"red" | "green"'),
        ({"enum": [1, 2.5, -3, True, None]}, "1 | 2.5 | -3 | true | null"),
        ({"enum": ['say "hi"', "line\nbreak"]}, '"say \\"hi\\"" | "line\\nbreak"'),
        ({"const": "cat"}, '"cat"'),
        ({"const": "cat", "type": "string"}, '"cat"'),
        ({"const": None}, "null"),
        ({"const": False}, "false"),
        ({"const": [1, "a"]}, '[1, "a"]'),
        ({"const": {"a": 1, "b c": [None]}}, '{ a: 1; "b c": [null] }'),
        ({"const": float("inf")}, "number"),
        ({"enum": []}, "never"),
    ],
)
def test_enums_and_literals(schema, expected):
    assert ts_type(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "integer", "nullable": True}, "number | null"),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}], "nullable": True}, "number | string | null"),
        ({"type": "null", "nullable": True}, "null"),
        ({"type": "array", "items": {"type": "integer", "nullable": True}}, "(number | null)[]"),
    ],
)
def test_nullable(schema, expected):
    assert ts_type(schema) == expected


def test_refs_name_definitions_and_unknown_refs_are_unknown():
    refs = {"Item-Output": "ItemOutput"}
    assert ts_type({"$ref": "#/$defs/Item-Output"}, refs) == "ItemOutput"
    assert ts_type({"$ref": "#/$defs/Item-Output", "description": "sibling keywords are ignored"}, refs) == "ItemOutput"
    assert ts_type({"type": "array", "items": {"$ref": "#/$defs/Item-Output"}}, refs) == "ItemOutput[]"
    assert ts_type({"$ref": "#/$defs/Missing"}, refs) == "unknown"
    assert ts_type({"$ref": "https://example.com/schema.json"}, refs) == "unknown"
    assert ts_type({"$ref": "#/$defs/Item-Output", "nullable": True}, refs) == "ItemOutput | null"


def test_type_names_are_sanitized():
    assert type_name("Message") == "Message"
    assert type_name("Counter_add_input") == "CounterAddInput"
    assert type_name("Item-Input") == "ItemInput"
    assert type_name("Page_Item_") == "PageItem"
    assert type_name("demo_project__chat__actors__Message") == "DemoProjectChatActorsMessage"
    assert type_name("lower case") == "LowerCase"
    assert type_name("2fa") == "T2fa"
    assert type_name("Café") == "Café"
    assert type_name("---") == "Type"
    assert type_name("Record") == "RecordType"  # used by the generated module itself
    assert type_name("App") == "AppType"
    assert type_name("string") == "String"
    assert type_name("type") == "Type"


def test_type_names_are_unique_and_deterministic():
    names = unique_type_names(["Foo_bar", "FooBar", "Foo-bar", "Other"], taken={"Other"})
    assert names == {"Foo-bar": "FooBar", "FooBar": "FooBar2", "Foo_bar": "FooBar3", "Other": "Other2"}
    assert unique_type_names(reversed(list(names))) == unique_type_names(list(names))


def test_doc_comments_are_escaped():
    assert doc_comment(["one line"], "  ") == "  /** one line */\n"
    assert doc_comment(["ends */ early"], "") == "/** ends *\\/ early */\n"
    assert doc_comment(["two\n\nparagraphs\n"], "") == "/**\n * two\n *\n * paragraphs\n */\n"
    assert doc_comment(["", "  "], "") == ""


def test_deprecated_and_described_properties_are_documented():
    schema = {
        "type": "object",
        "properties": {"old": {"type": "integer", "deprecated": True, "description": "Use new."}},
        "required": ["old"],
    }
    assert ts_type(schema) == "{\n  /**\n   * Use new.\n   * @deprecated\n   */\n  old: number;\n}"


def test_converter_indents_with_depth():
    conv = Converter()
    schema = {"type": "object", "properties": {"a": {"type": "integer", "description": "d"}}}
    assert conv.type(schema, 2) == "{\n      /** d */\n      a?: number;\n    }"


# -- schemas of real declarations --------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Tree(BaseModel):
    """A tree of names."""

    name: str
    children: list[Tree] = []


class Record(BaseModel):  # a name the generated module uses itself
    x: int


class App(BaseModel):
    y: int = 1


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"
    lives: int = 9


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"
    good: bool = True


class Point(TypedDict):
    x: float
    y: NotRequired[float]


class Shared(BaseModel):
    """Used both as an input and in the state."""

    label: str = "?"

    @computed_field
    @property
    def upper(self) -> str:
        return self.label.upper()


class ByAlias(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)

    snake_case: int = Field(0, alias="camelCase")


MessageOne = create_model("Message", a=(int, ...), __module__="one.actors")
MessageTwo = create_model("Message", b=(str, ...), __module__="two.actors")


class ExoticState(BaseModel):
    tree: Tree = Tree(name="root")
    color: Color = Color.RED
    level: Level = Level.LOW
    pets: list[Annotated[Union[Cat, Dog], Field(discriminator="kind")]] = []  # noqa: UP007
    pair: tuple[int, str] = (0, "")
    many: tuple[int, ...] = ()
    scores: dict[str, float] = {}
    by_color: dict[Color, int] = {}
    anything: Any = None
    maybe: Optional[Record] = None  # noqa: UP045
    shared: list[Shared] = []
    app: App = App()
    point: Point = {"x": 0}
    m1: MessageOne | None = None
    m2: MessageTwo | None = None
    hidden: int = Field(default=0, exclude=True)
    aliased: int = Field(default=0, alias="aliasedField")  # dumped by name: the server does not use by_alias
    by_alias: ByAlias = ByAlias()  # ... unless the model's config says so
    described: Annotated[int, Field(description="A described */ field\nover two lines")] = 0


@pytest.fixture(scope="module")
@isolate_actors()
def exotic():
    """Actors with every construct and awkward names, kept out of the project's registry."""

    class Exotic(Actor):
        """Exotic declarations."""

        name = "ex-otic"
        State = ExoticState
        events = {"with space": Tree, "on": Color, "lit": Literal["a", "b", 3], "none": type(None)}

        @method(name="on")
        async def on_(self, ctx) -> None: ...

        @method(name="do-it")
        async def do_it(
            self, ctx, shared: Shared, color: Color = Color.RED, nums: list[int] | None = None
        ) -> tuple[int, str]: ...

        @method
        async def untyped(self, ctx, x: int = 1): ...

        @method
        async def aliased(self, ctx, item_count: Annotated[int, Field(alias="itemCount")]) -> ByAlias: ...

        @method
        async def nullable(self, ctx, x: int | None) -> Tree | None:
            """Finds a tree.

            Or not.
            """

    class Named(Actor):
        name = "actor"  # the name of a client member: reachable with client.actor("actor", id)
        State = App

    for spec in (Exotic.spec, Named.spec):
        assert spec.problems == []
    return [Exotic.spec, Named.spec]


def test_server_values_have_every_field_and_inputs_only_the_required_ones(exotic):
    schemas, defs = actor_schemas(exotic)
    assert set(defs["ExoticState"]["required"]) == set(ExoticState.model_fields) - {"hidden"}
    assert "hidden" not in defs["ExoticState"]["properties"]
    assert defs["Shared-Output"]["required"] == ["label", "upper"]  # computed fields are sent too
    assert "required" not in defs["Shared-Input"]
    assert defs["Point"]["required"] == ["x"]  # a TypedDict key that is not required may be missing
    assert schemas[("ex-otic", "event", "none")] == {"type": "null"}
    assert ("ex-otic", "result", "untyped") not in schemas


def test_keys_are_the_ones_the_server_dumps(exotic):
    _, defs = actor_schemas(exotic)
    dumped = exotic[0].initial_state().model_dump(mode="json")
    assert set(defs["ExoticState"]["properties"]) == set(dumped)
    assert set(defs["ByAlias"]["properties"]) == set(dumped["by_alias"]) == {"camelCase"}
    assert set(defs["SharedOutput" if "SharedOutput" in defs else "Shared-Output"]["properties"]) == set(
        Shared().model_dump(mode="json")
    )


def test_inputs_use_the_aliases_validation_accepts(exotic):
    schemas, defs = actor_schemas(exotic)
    target = schemas[("ex-otic", "input", "aliased")]["$ref"].split("/")[-1]
    assert set(defs[target]["properties"]) == {"itemCount"}
    assert exotic[0].methods["aliased"].input_model.model_validate({"itemCount": 2}).item_count == 2


def test_generated_module(exotic):
    text = generate(exotic)
    assert text == generate(list(reversed(exotic)))  # deterministic
    for fragment in [
        "export interface AppType {\n  y: number;\n}\n",
        'export type Color = "red" | "green";\n',
        "export type Level = 1 | 2;\n",
        "export interface RecordType {\n  x: number;\n}\n",
        'export interface SharedInput {\n  /** @default "?" */\n  label?: string;\n}\n',
        "export interface SharedOutput {\n  label: string;\n  upper: string;\n}\n",
        "/** A tree of names. */\nexport interface Tree {\n  name: string;\n  children: Tree[];\n}\n",
        "export interface OneActorsMessage {\n  a: number;\n}\n",
        "export interface TwoActorsMessage {\n  b: string;\n}\n",
        "  pets: (Cat | Dog)[];\n",
        "  pair: [number, string];\n",
        "  many: number[];\n",
        "  scores: Record<string, number>;\n",
        "  by_color: Partial<Record<Color, number>>;\n",
        "  anything: unknown;\n",
        "  maybe: RecordType | null;\n",
        "  shared: SharedOutput[];\n",
        "  point: Point;\n",
        "  /**\n   * A described *\\/ field\n   * over two lines\n   */\n  described: number;\n",
        '  /** Exotic declarations. */\n  "ex-otic": {\n    state: ExoticState;\n',
        '      "do-it": {\n        input: {\n          shared: SharedInput;\n',
        "        result: [number, string];\n",
        "      /**\n       * Finds a tree.\n       *\n       * Or not.\n       */\n"
        "      nullable: { input: { x: number | null }; result: Tree | null };\n",
        "      on: { input: Record<string, never>; result: null };\n",
        "        result: unknown;\n",  # no return annotation
        '      lit: "a" | "b" | 3;\n',
        "      none: null;\n",
        "      on: Color;\n",
        '      "with space": Tree;\n',
        "  actor: {\n    state: AppType;\n    methods: {};\n    events: {};\n  };\n",
    ]:
        assert fragment in text, fragment
    assert "hidden" not in text
    assert "Input" not in text.split("export interface App ")[1].split("SharedInput")[0]  # inputs are inlined
    assert "ExoticDoItInput" not in text and "Exotic_do-it_input" not in text


def test_zocket_flavor(exotic):
    text = generate(exotic, "zocket")
    assert text == generate(list(reversed(exotic)), "zocket")  # deterministic
    assert text.startswith("// Generated by `python manage.py zocket_typescript --flavor zocket`")
    app = text.split("export interface App ")[1]
    assert app.startswith('{\n  readonly _tag: "AppDef";\n  readonly actors: {\n')
    for fragment in [
        "export interface ZocketSchema<T> {\n",
        "export interface Tree {\n  name: string;\n  children: Tree[];\n}\n",  # the same named types
        '    "ex-otic": ZocketActor<\n      ExoticState,\n      {\n',
        "        aliased: ZocketMethod<{ itemCount: number }, ByAlias>;\n",
        # every parameter optional: still an input (a documented one makes a block)
        "        untyped: ZocketMethod<{\n          /** @default 1 */\n          x?: number;\n        }, unknown>;\n",
        "        nullable: ZocketMethod<{ x: number | null }, Tree | null>;\n",
        "        // on: left out, a member of Zocket's actor handle has its name\n",
        '        "with space": ZocketSchema<Tree>;\n',
        "        none: ZocketSchema<null>;\n",
        "    actor: ZocketActor<\n      AppType,\n      {},\n      {}\n    >;\n",
    ]:
        assert fragment in text, fragment
    assert "on: ZocketMethod" not in text


def test_zocket_flavor_leaves_out_what_zocket_cannot_reach(exotic):
    spec = exotic[1]
    renamed = [dataclasses.replace(spec, name=name) for name in ("connection", "$ready", "fine")]
    app = generate(renamed, "zocket").split("export interface App ")[1]
    assert "    // $ready: left out, a member of Zocket's client has its name\n" in app
    assert "    // connection: left out, a member of Zocket's client has its name\n" in app
    assert "    fine: ZocketActor<" in app and "    connection: " not in app


def test_zocket_flavor_helper_names_stay_unique():
    class ZocketSchema(BaseModel):  # a model named like a helper of the generated module
        x: int = 0

    class Clash(Actor):
        name = "clash"
        State = ZocketSchema

    registry._specs.pop(Clash.spec.name)
    text = generate([Clash.spec], "zocket")
    assert "export interface ZocketSchema2 {\n  x: number;\n}\n" in text
    assert "    clash: ZocketActor<\n      ZocketSchema2," in text
    assert "ZocketSchema2" not in generate([Clash.spec])  # the default flavor has no helpers to avoid


def test_unknown_flavor():
    with pytest.raises(ValueError, match="unknown flavor 'react'"):
        generate([], "react")


def test_no_actors():
    assert generate([]).rstrip().endswith("export interface App {}")


# -- the management command --------------------------------------------------------------------


def test_command_writes_to_stdout():
    out = io.StringIO()
    call_command("zocket_typescript", stdout=out)
    text = out.getvalue()
    assert text == generate(registry.specs())
    assert text.startswith("// Generated by `python manage.py zocket_typescript`")
    assert "  counter: {\n    state: CounterState;\n" in text
    assert "      add: { input: { amount: number }; result: number };\n" in text
    assert "      increment: { input: Record<string, never>; result: number };\n" in text
    assert "      newMessage: Message;\n" in text


def test_command_writes_and_checks_a_file(tmp_path):
    target = tmp_path / "types" / "zocket-app.d.ts"
    call_command("zocket_typescript", "--output", str(target), stdout=io.StringIO(), stderr=io.StringIO())
    assert target.read_text() == generate(registry.specs())
    out = io.StringIO()
    call_command("zocket_typescript", "--output", str(target), "--check", stdout=out)
    assert "up to date" in out.getvalue()
    target.write_text(target.read_text().replace("count: number", "count: string"))
    with pytest.raises(CommandError, match="out of date"):
        call_command("zocket_typescript", "--output", str(target), "--check")
    with pytest.raises(CommandError, match="out of date"):
        call_command("zocket_typescript", "--output", str(tmp_path / "missing.ts"), "--check")
    with pytest.raises(CommandError, match="--check needs --output"):
        call_command("zocket_typescript", "--check")


def test_command_flavor(tmp_path):
    out = io.StringIO()
    call_command("zocket_typescript", "--flavor", "zocket", stdout=out)
    assert out.getvalue() == generate(registry.specs(), "zocket")
    target = tmp_path / "zocket-app.d.ts"
    call_command("zocket_typescript", "-o", str(target), "--flavor", "zocket", stderr=io.StringIO())
    call_command("zocket_typescript", "-o", str(target), "--flavor", "zocket", "--check", stdout=io.StringIO())
    call_command("zocket_typescript", "-o", str(target), stderr=io.StringIO())  # the other flavor
    with pytest.raises(CommandError, match=f"run manage.py zocket_typescript --output {target} --flavor zocket$"):
        call_command("zocket_typescript", "-o", str(target), "--flavor", "zocket", "--check")
    with pytest.raises(CommandError, match="invalid choice: 'react'"):
        call_command("zocket_typescript", "--flavor", "react")


def test_command_refuses_broken_declarations(monkeypatch):
    problem = Problem("zocket.E002", "State cannot be built", obj=Actor)
    monkeypatch.setattr(registry, "problems", lambda: [problem])
    with pytest.raises(CommandError, match=r"zocket\.E002 zocket_django\.actor\.Actor: State cannot be built"):
        call_command("zocket_typescript", stdout=io.StringIO())


def test_declarations_match_the_modules_exports():
    js = (STATIC / "zocket.js").read_text()
    dts = (STATIC / "zocket.d.ts").read_text()
    exported = set(re.findall(r"^export (?:async )?(?:function|class|const|let) (\w+)", js, re.M))
    declared = set(re.findall(r"^export declare (?:function|class|const) (\w+)", dts, re.M))
    assert exported == declared == {"createClient", "applyPatch", "ZocketError"}
    js = (STATIC / "zocket-react.js").read_text()
    dts = (STATIC / "zocket-react.d.ts").read_text()
    exported = set(re.findall(r"^export (?:function|const) (\w+)", js, re.M))
    declared = set(re.findall(r"^export declare function (\w+)", dts, re.M))
    assert (
        exported
        == declared
        == {
            "ZocketProvider",
            "useClient",
            "useActor",
            "useActorState",
            "useEvent",
            "useConnectionStatus",
            "createZocketReact",
        }
    )


# -- the compiler ------------------------------------------------------------------------------
#
# One tsc run (it is slow to start) over four directories, each a small project of its own:
#   main/    the generated app.d.ts of the test project, and every fixture of tests/typescript/
#   as_ts/   the generated module written as app.ts instead, and ok.ts
#   exotic/  the module generated for the exotic actors above, and EXOTIC_USE
#   harness/ a file with one known error, to prove errors are found and attributed


def run_tsc(workdir: Path, files: list[str]) -> dict[str, list[str]]:
    """Runs tsc on ``files`` in ``workdir``; the errors (with their continuation lines) by file."""
    proc = subprocess.run([str(TSC), *TSC_FLAGS, *files], cwd=workdir, capture_output=True, text=True, timeout=300)
    errors: dict[str, list[str]] = {}
    last = None
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+?)\(\d+,\d+\): error ", line)
        if m:
            last = m.group(1)
            errors.setdefault(last, []).append(line)
        elif line.startswith(" ") and last:
            errors[last][-1] += "\n" + line
        elif line.strip():
            errors.setdefault("<tsc>", []).append(line)
    assert errors or proc.returncode == 0, proc.stdout + proc.stderr
    return errors


def manage_typescript(output: Path, *options: str) -> None:
    """``manage.py zocket_typescript --output`` for the test project, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "manage.py", "zocket_typescript", "--output", str(output), *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr


def copy_client(workdir: Path) -> None:
    """The browser client as a user ships it: zocket.js and its hooks, each with its .d.ts next to it."""
    for name in ("zocket.js", "zocket.d.ts", "zocket-react.js", "zocket-react.d.ts"):
        shutil.copy(STATIC / name, workdir / name)
    (workdir / "node_modules").symlink_to(TSC.parent.parent, target_is_directory=True)  # React's types


FIXTURE_FILES = sorted(p.name for p in FIXTURES.glob("*.ts"))
# For Zocket's own client: its stand-in (zocket-client.d.ts, see there), and uses of the generated types.
ZOCKET_FIXTURES = FIXTURES / "zocket"
ZOCKET_STANDIN = "zocket-client.d.ts"
ZOCKET_FIXTURE_FILES = sorted(p.name for p in ZOCKET_FIXTURES.glob("*.ts") if p.name != ZOCKET_STANDIN)


def expectation(name: str, folder: Path = FIXTURES) -> tuple[str, str] | None:
    """(code, message start) from a fixture's ``// expect-error TS1234: message`` first line."""
    m = re.match(r"// expect-error (TS\d+): (.*)", (folder / name).read_text().splitlines()[0])
    return (m.group(1), m.group(2)) if m else None


EXOTIC_USE = """
import { createClient } from "./zocket.js";
import type { App, Color, Tree } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
const handle = client["ex-otic"]("x");
const pair: [number, string] = await handle["do-it"]({ shared: {}, color: "green" });
await handle["do-it"]({ shared: { label: "l" }, nums: null });
const found: Tree | null = await handle.nullable({ x: null });
const untyped: unknown = await handle.untyped();
await handle.$call("on");                          // the method named like the handle's member
handle.on("on", (c: Color) => console.log(c));     // the event named "on"
handle.on("with space", (t) => console.log(t.children.map((c) => c.name)));
handle.on("lit", (v: "a" | "b" | 3) => console.log(v));
handle.state.subscribe((s) => console.log(s.pets.map((p) => (p.kind === "cat" ? p.lives : p.good))));
const byAlias = await handle.aliased({ itemCount: 2 });
handle.state.subscribe((s) => console.log(s.aliased, s.by_alias.camelCase, byAlias.camelCase));
const named = client.actor("actor", "x");          // an actor named like a client member
named.state.subscribe((s) => console.log(s.y.toFixed()));
console.log(pair, found, untyped);
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, exotic) -> dict[str, list[str]]:
    """Errors by path relative to the run's directory (``main/bad_input.ts``)."""
    need("node", shutil.which("node") is not None, "install Node 20+")
    need("tsc", TSC.exists(), "run scripts/setup-js (or scripts/test), which installs tests/js/node_modules")
    root = tmp_path_factory.mktemp("ts")
    files: list[str] = []

    def project(name: str, app: str, sources: dict[str, str], flavor: str = "zocket_django") -> None:
        workdir = root / name
        workdir.mkdir()
        if flavor == "zocket":  # the stand-in as the package @zocket/client, and @standard-schema/spec
            package = workdir / "node_modules" / "@zocket" / "client"
            package.mkdir(parents=True)
            (package / "index.d.ts").write_text((ZOCKET_FIXTURES / ZOCKET_STANDIN).read_text())
            (package / "package.json").write_text('{"name": "@zocket/client", "types": "index.d.ts"}')
            (workdir / "node_modules" / "@standard-schema").symlink_to(TSC.parent.parent / "@standard-schema")
        else:
            copy_client(workdir)
        if app == "app.d.ts":
            manage_typescript(workdir / app, "--flavor", flavor)
        elif app:  # the same module, as a .ts file
            shutil.copy(root / "main" / "app.d.ts", workdir / app)
        for file, text in sources.items():
            (workdir / file).write_text(text)
        files.extend(f"{name}/{f}" for f in [*([app] if app else []), *sources])

    project("main", "app.d.ts", {n: (FIXTURES / n).read_text() for n in FIXTURE_FILES})
    project("as_ts", "app.ts", {"ok.ts": (FIXTURES / "ok.ts").read_text()})
    project("exotic", "", {"app.d.ts": generate(exotic), "use.ts": EXOTIC_USE})
    project("harness", "", {"broken.ts": 'const x: number = "no";\nexport {};\n'})
    zocket_sources = {n: (ZOCKET_FIXTURES / n).read_text() for n in ZOCKET_FIXTURE_FILES}
    project("zocket", "app.d.ts", zocket_sources, flavor="zocket")
    project("zocket_exotic", "", {"app.d.ts": generate(exotic, "zocket"), "use.ts": ZOCKET_EXOTIC_USE}, "zocket")
    return run_tsc(root, files)


ZOCKET_EXOTIC_USE = """
import { createClient } from "@zocket/client";
import type { App, Color, Tree } from "./app";

const client = createClient<App>({ url: "ws://localhost/ws/" });
const handle = client["ex-otic"]("x");
const pair: [number, string] = await handle["do-it"]({ shared: {}, color: "green" });
const found: Tree | null = await handle.nullable({ x: null });
const untyped: unknown = await handle.untyped({});
handle.on("on", (c: Color) => console.log(c));
handle.on("with space", (t) => console.log(t.children.map((c) => c.name)));
handle.state.subscribe((s) => console.log(s.pets.map((p) => (p.kind === "cat" ? p.lives : p.good))));
client.actor("x").state.subscribe((s) => console.log(s.y.toFixed()));
console.log(pair, found, untyped);
"""


def test_fixtures_cover_the_required_mistakes():
    assert {"ok.ts", "bad_method.ts", "bad_input.ts", "bad_event_payload.ts"} <= set(FIXTURE_FILES)
    assert {"react_ok.ts", "react_bad_event.ts", "react_bad_selector.ts"} <= set(FIXTURE_FILES)
    for name in FIXTURE_FILES:
        assert (expectation(name) is None) == name.endswith("ok.ts"), name


def test_errors_are_found_and_attributed(compiled):
    assert len(compiled["harness/broken.ts"]) == 1
    assert "error TS2322: Type 'string' is not assignable to type 'number'" in compiled["harness/broken.ts"][0]


def test_the_declarations_themselves_compile(compiled):
    fixtures = (
        {f"main/{n}" for n in FIXTURE_FILES} | {f"zocket/{n}" for n in ZOCKET_FIXTURE_FILES} | {"harness/broken.ts"}
    )
    assert {f: e for f, e in compiled.items() if f not in fixtures} == {}


@pytest.mark.parametrize(
    ("project", "folder", "name"),
    [("main", FIXTURES, n) for n in FIXTURE_FILES] + [("zocket", ZOCKET_FIXTURES, n) for n in ZOCKET_FIXTURE_FILES],
    ids=[f"main/{n}" for n in FIXTURE_FILES] + [f"zocket/{n}" for n in ZOCKET_FIXTURE_FILES],
)
def test_fixture(compiled, project, folder, name):
    expected = expectation(name, folder)
    errors = compiled.get(f"{project}/{name}", [])
    if expected is None:
        assert errors == [], "\n".join(errors)
        return
    code, message = expected
    assert len(errors) == 1, f"{name} should fail with exactly one error, got:\n" + "\n".join(errors)
    assert f"error {code}: {message}" in errors[0], errors[0]


def test_zocket_fixtures_cover_the_required_mistakes():
    assert {"ok.ts", "bad_method.ts", "bad_input.ts", "bad_event_payload.ts"} <= set(ZOCKET_FIXTURE_FILES)
    for name in ZOCKET_FIXTURE_FILES:
        assert (expectation(name, ZOCKET_FIXTURES) is None) == (name == "ok.ts"), name


def test_the_zocket_declarations_and_the_standin_compile(compiled):
    standin = "node_modules/@zocket/client/index.d.ts"
    for file in ("zocket/app.d.ts", f"zocket/{standin}", "zocket_exotic/app.d.ts", "zocket_exotic/use.ts"):
        assert compiled.get(file) is None, compiled.get(file)


def test_a_generated_ts_module_works_as_well(compiled):
    assert compiled.get("as_ts/ok.ts") is None and compiled.get("as_ts/app.ts") is None


def test_exotic_declarations_compile(compiled):
    assert compiled.get("exotic/use.ts") is None and compiled.get("exotic/app.d.ts") is None
