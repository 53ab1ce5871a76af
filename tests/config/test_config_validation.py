"""Every validation error is one line naming the file, the task and the process or constraint."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thermos.common.planner import InvalidSchedule, TaskPlanner
from thermos.config.loader import InvalidTaskError, ThermosTaskValidator, ThermosTaskWrapper
from thermos.config.schema import Constraint, Process, RestartBackoff, Task, order

SOURCE = 'examples/bad.thermos'


def proc(name, **kw):
    return Process(name=name, cmdline='echo %s' % name, **kw)


def error_for(task, source=SOURCE):
    with pytest.raises(InvalidTaskError) as info:
        ThermosTaskValidator.assert_valid_task(task, source=source)
    message = str(info.value)
    assert '\n' not in message
    return message


def test_a_good_task_passes():
    a, b, f = proc('a'), proc('b'), proc('f', final=True)
    ThermosTaskValidator.assert_valid_task(Task(
        name='ok', processes=[a, b, f, proc('d', daemon=True), proc('e', ephemeral=True)],
        constraints=order(a, b) + order('x', 'y')))  # an order naming no process is ignored


@pytest.mark.parametrize('name, shown, problem', [
    ('a/b', 'a/b', "must not contain '/' or control characters such as newlines"),
    ('.hidden', '.hidden', "must not start with '.'"),
    ('', '', 'must not be empty'),
    ('/abs', '/abs', "must not contain '/' or control characters such as newlines"),
    ('evil\nssh-rsa AAAA', 'evil\\nssh-rsa AAAA',
     "must not contain '/' or control characters such as newlines"),
    ('tab\there', 'tab\\there', "must not contain '/' or control characters such as newlines"),
    ('x' * 256, 'x' * 256, 'must be at most 255 bytes'),
])
def test_invalid_process_name(name, shown, problem):
    message = error_for(Task(name='hello', processes=[proc(name)]))
    assert message == "examples/bad.thermos: task 'hello': process '%s': invalid process name: %s" % (
        shown, problem)
    assert '\n' not in message  # one line, even for a name holding a newline


@pytest.mark.parametrize('name', ['web', 'web_server-2', 'a.b', 'Nginx:80', 'x' * 255, 'étape'])
def test_ordinary_process_names_stay_valid(name):
    ThermosTaskValidator.assert_valid_task(Task(name='hello', processes=[proc(name)]))


def test_duplicate_process_name():
    assert error_for(Task(name='hello', processes=[proc('a'), proc('a', daemon=True)])) == (
        "examples/bad.thermos: task 'hello': process 'a': duplicate process name (process names "
        "must be unique within a task)")


def test_missing_required_field():
    assert error_for(Task(name='hello', processes=[proc('a'), Process(name='b')])) == (
        "examples/bad.thermos: task 'hello': process 'b': cmdline is required but not set")


def test_unnamed_process_is_named_by_position():
    assert error_for(Task(name='hello', processes=[proc('a'), Process(cmdline='true')])) == (
        "examples/bad.thermos: task 'hello': process #1 (unnamed): name is required but not set")


def test_bad_field_value():
    assert error_for(Task(name='hello', processes=[proc('a', min_duration='soon')])) == (
        "examples/bad.thermos: task 'hello': process 'a': min_duration must be an integer, "
        "got 'soon'")


def test_bad_nested_field_value():
    task = Task(name='hello', processes=[proc('a', logger={'rotate': {'backups': 'many'}})])
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': process 'a': logger.rotate.backups must be an "
        "integer, got 'many'")


def test_bad_task_field_value():
    task = Task(name='hello', processes=[proc('a')], resources={'cpu': 1, 'ram': 'lots', 'disk': 1})
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': resources.ram must be an integer, got 'lots'")


def test_unbound_variable_in_a_typed_field():
    task = Task(name='hello', processes=[proc('a', max_failures='{{retries}}')])
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': process 'a': max_failures uses unbound template "
        "variable {{retries}} (bind it with -E retries=VALUE, or write a literal value)")


def test_unbound_variable_in_a_cmdline():
    task = Task(name='hello', processes=[proc('a'), Process(name='b', cmdline='run {{versoin}}')])
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': process 'b': unbound template variable {{versoin}} "
        "(bind it with -E versoin=VALUE; only {{thermos.ports[NAME]}}, {{thermos.task_id}} and "
        "{{thermos.user}} are filled in at launch, and template variables cannot be nested)")


def test_thermos_namespace_refs_are_not_unbound():
    ThermosTaskValidator.assert_valid_task(Task(name='hello', processes=[
        Process(name='a', cmdline='{{thermos.ports[http]}} {{thermos.task_id}} {{thermos.user}}')]))


def test_misspelt_launch_variable():
    task = Task(name='hello', processes=[Process(name='a', cmdline='{{thermos.taskid}}')])
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': process 'a': unknown launch variable "
        "{{thermos.taskid}} (the runner fills in only {{thermos.ports[NAME]}}, {{thermos.task_id}} "
        "and {{thermos.user}})")


def test_nested_template_variables_are_unbound():
    task = Task(name='hello', processes=[Process(name='a', cmdline='{{thermos.ports[{{p}}]}}')])
    assert 'unbound template variable' in error_for(task)


def test_unbound_variable_outside_processes_names_the_task():
    task = Task(name='hello', processes=[proc('a')], user='{{owner}}')
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': unbound template variable {{owner}} (bind it with "
        "-E owner=VALUE; only {{thermos.ports[NAME]}}, {{thermos.task_id}} and {{thermos.user}} "
        "are filled in at launch, and template variables cannot be nested)")


def test_task_without_processes_or_name():
    assert error_for(Task(processes=[])) == (
        'examples/bad.thermos: unnamed task: has no processes and no name (add at least one process, '
        'processes = [Process(name = ..., cmdline = ...)], and set name = ...)')


@pytest.mark.parametrize('task', [Task(name='x'), Task(name='x', processes=[])])
def test_task_without_processes_is_invalid(task):
    # Aurora's planner crashed on the first with a TypeError; the second "succeeded" running nothing.
    assert error_for(task) == (
        "examples/bad.thermos: task 'x': has no processes (add at least one: processes = "
        "[Process(name = ..., cmdline = ...)])")


def test_bad_port_reference():
    task = Task(name='hello', processes=[Process(name='web', cmdline='{{thermos.ports.http}}')])
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': process 'web': bad port reference "
        "{{thermos.ports.http}} (write it as {{thermos.ports[http]}})")


def test_order_after_a_daemon():
    a, b = proc('a', daemon=True), proc('b')
    assert error_for(Task(name='hello', processes=[a, b], constraints=order(a, b))) == (
        "examples/bad.thermos: task 'hello': constraint order(a, b): orders process 'b' after "
        "daemon process 'a', which never finishes (remove the order, or make 'a' not a daemon)")


def test_non_ephemeral_after_ephemeral():
    a, b = proc('a', ephemeral=True), proc('b')
    assert error_for(Task(name='hello', processes=[a, b], constraints=order(a, b))) == (
        "examples/bad.thermos: task 'hello': constraint order(a, b): orders non-ephemeral process "
        "'b' after ephemeral process 'a', which may never finish (make 'b' ephemeral too, or "
        "remove the order)")


def test_ephemeral_after_ephemeral_is_fine():
    a, b = proc('a', ephemeral=True), proc('b', ephemeral=True)
    ThermosTaskValidator.assert_valid_task(Task(name='ok', processes=[a, b], constraints=order(a, b)))


def test_order_cycle():
    a, b, c = proc('a'), proc('b'), proc('c')
    task = Task(name='hello', processes=[a, b, c], constraints=order(a, b, c) + order(c, a))
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': order constraints form a cycle 'a' -> 'b' -> 'c' -> "
        "'a' (remove one of these orderings)")


def test_process_ordered_after_itself():
    a = proc('a')
    assert error_for(Task(name='hello', processes=[a], constraints=order(a, a))) == (
        "examples/bad.thermos: task 'hello': order constraints form a cycle 'a' -> 'a' (remove "
        "one of these orderings)")


def test_empty_order():
    task = Task(name='hello', processes=[proc('a')], constraints=[Constraint(order=[])])
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': constraint order(): empty order list (list the "
        "processes to run in order, or remove it)")


def test_order_names_an_unknown_process():
    a = proc('a')
    assert error_for(Task(name='hello', processes=[a], constraints=order(a, 'nope'))) == (
        "examples/bad.thermos: task 'hello': constraint order(a, nope): names unknown process "
        "'nope' (define it in this task, or remove it from the order)")


def test_order_mixes_final_and_regular():
    a, f = proc('a'), proc('f', final=True)
    assert error_for(Task(name='hello', processes=[a, f], constraints=order(a, f))) == (
        "examples/bad.thermos: task 'hello': constraint order(a, f): mixes final process 'f' with "
        "regular process 'a' (finalizers always run after all regular processes; order them in "
        "separate constraints)")


def test_finalizers_may_be_ordered_among_themselves():
    f1, f2 = proc('f1', final=True), proc('f2', final=True)
    ThermosTaskValidator.assert_valid_task(
        Task(name='ok', processes=[proc('main'), f1, f2], constraints=order(f1, f2)))


def test_invalid_backoff():
    task = Task(name='hello', processes=[proc('a', backoff=RestartBackoff(multiplier=0.5))])
    assert error_for(task) == (
        "examples/bad.thermos: task 'hello': process 'a': backoff multiplier must be at least 1 "
        "(a shrinking delay is not a backoff), got 0.5 (fix the backoff settings)")
    ThermosTaskValidator.assert_valid_task(
        Task(name='ok', processes=[proc('a', backoff=RestartBackoff())]))


def test_without_a_file_the_message_starts_with_the_task():
    assert error_for(Task(name='hello', processes=[proc('a/b')]), source=None).startswith(
        "task 'hello': process 'a/b': ")


def test_wrapper_validates_with_its_source():
    wrapper = ThermosTaskWrapper(Task(name='hello', processes=[proc('.a')]), source='x.thermos')
    with pytest.raises(InvalidTaskError) as info:
        wrapper.assert_valid()
    assert str(info.value).startswith("x.thermos: task 'hello': process '.a': ")


def test_validator_uses_bound_task_names():
    task = Task(name='{{job}}', processes=[Process(name='{{job}}_main', cmdline='x')]).bind(job='web')
    ThermosTaskValidator.assert_valid_task(task)
    bad = Task(name='{{job}}', processes=[Process(name='{{job}}/main', cmdline='x')]).bind(job='web')
    assert error_for(bad).startswith("examples/bad.thermos: task 'web': process 'web/main': ")


# ---------------------------------------------------------------------------- planner agreement

NAMES = ['a', 'b', 'c', 'd']

processes_strategy = st.lists(
    st.tuples(st.sampled_from(NAMES), st.booleans(), st.booleans(), st.booleans()),
    min_size=1, max_size=4, unique_by=lambda t: t[0])
orders_strategy = st.lists(st.lists(st.sampled_from(NAMES + ['x']), max_size=4), max_size=3)


def planner_accepts(task):
    try:
        TaskPlanner(task, process_filter=lambda p: not p.final().get())
        TaskPlanner(task, process_filter=lambda p: bool(p.final().get()))
    except InvalidSchedule:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(processes_strategy, orders_strategy)
def test_plan_errors_agree_with_the_planner_and_name_the_culprit(specs, orders):
    """Whatever the planner rejects gets a specific explanation, and nothing else is rejected."""
    processes = [Process(name=n, cmdline='true', final=f, daemon=d, ephemeral=e)
                 for n, f, d, e in specs]
    task = Task(name='t', processes=processes, constraints=[Constraint(order=o) for o in orders])
    if planner_accepts(task):
        ThermosTaskValidator.assert_valid_plan(task, source=SOURCE)
        return
    with pytest.raises(InvalidTaskError) as info:
        ThermosTaskValidator.assert_valid_plan(task, source=SOURCE)
    message = str(info.value)
    assert message.startswith("examples/bad.thermos: task 't': ")
    assert 'cannot be scheduled' not in message  # the generic fallback was not needed
