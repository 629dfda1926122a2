import pytest

from madx import Stack


def test_stack_is_a_validated_value():
    assert Stack("qu", "ner") == Stack("qu", "ner")
    assert Stack("qu", "ner") != Stack("ner", "qu")
    assert hash(Stack("qu", "ner")) == hash(Stack("qu", "ner"))
    assert list(Stack("qu", "ner")) == ["qu", "ner"]
    assert str(Stack("qu", "ner")) == "Stack(qu, ner)"


@pytest.mark.parametrize(
    "names,kwargs,message",
    [
        ((), {}, "at least one"),
        (("qu", "qu"), {}, "each adapter once"),
        (("a", "b", "c"), {}, "3 names"),
        (("q.u",), {}, "letters, digits"),
        (("",), {}, "non-empty"),
        (("qu",), {"mode": "fusion"}, "mode must be one of"),
    ],
)
def test_bad_stacks_are_rejected(names, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Stack(*names, **kwargs)


def test_stack_round_trips_through_dict_and_text():
    stack = Stack("qu", "ner", mode="adapterhub")
    assert Stack.from_dict(stack.to_dict()) == stack
    assert Stack.parse("qu+ner") == Stack("qu", "ner")
    assert Stack.parse("qu, ner") == Stack("qu", "ner")
    with pytest.raises(ValueError, match="not a serialised Stack"):
        Stack.from_dict({"names": "qu"})
