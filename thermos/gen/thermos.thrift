// Checkpoint records of the Thermos runner and its coordinators.
// Field ids, types and enum values are the on-disk contract shared with Apache Aurora's
// thermos_internal.thrift: never renumber, only add new optional fields.

namespace py thermos.gen.thermos

enum ProcessState {
  WAITING = 0
  FORKED  = 1
  RUNNING = 2
  SUCCESS = 3
  KILLED  = 4
  FAILED  = 5
  LOST    = 6
}

struct ProcessStatus {
  1:  i64          seq
  3:  string       process
  5:  ProcessState state
  10: i32          coordinator_pid
  11: double       fork_time
  6:  double       start_time
  7:  i32          pid
  8:  double       stop_time
  9:  i32          return_code
}

enum TaskState {
  ACTIVE     = 0
  SUCCESS    = 1
  FAILED     = 2
  KILLED     = 3
  LOST       = 4
  CLEANING   = 5
  FINALIZING = 6
}

struct TaskStatus {
  1: TaskState state
  2: i64       timestamp_ms
  3: i32       runner_pid
  4: i32       runner_uid
  // Thermos only (ids Aurora never used; its readers skip them): on the CLEANING record of a
  // kill, the terminal state asked for (KILLED or LOST) and when the preemption wait ends, so a
  // runner restarted mid-stop ends the task as asked.
  32: optional TaskState requested_state
  33: optional i64       preemption_deadline_ms
}

struct RunnerHeader {
  1: string           task_id
  2: i64              launch_time_ms
  3: string           sandbox
  7: string           log_dir
  4: string           hostname
  5: string           user
  8: i32              uid
  6: map<string, i64> ports
  // Thermos only (an id Aurora never used; its readers skip it): the task's cgroup, so that a
  // later runner, `thermos kill` or the executor finds every process of the task.
  32: optional string cgroup
}

union RunnerCkpt {
  1: RunnerHeader  runner_header
  2: ProcessStatus process_status
  3: TaskStatus    task_status
}

// In-memory only: the state rebuilt by replaying a runner checkpoint. Never written to disk.
struct RunnerState {
  1: RunnerHeader                       header
  2: list<TaskStatus>                   statuses
  3: map<string, list<ProcessStatus>>   processes
}
