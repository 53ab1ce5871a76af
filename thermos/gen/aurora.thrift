// The subset of Apache Aurora's scheduler API (api.thrift) and internal RPC (internal_rpc.thrift)
// that the executors read: the AssignedTask a scheduler puts in TaskInfo.data (TBinaryProtocol)
// and the GC executor's AdjustRetainedTasks message.
// Field ids, types and enum values are Aurora's wire contract: never renumber. Structs the
// executors never look inside are still declared so that a payload decodes to typed values
// instead of being skipped.

namespace py thermos.gen.aurora

const string AURORA_EXECUTOR_NAME = "AuroraExecutor"
// Where a filesystem-image task's root file system is mounted inside the executor's sandbox.
const string TASK_FILESYSTEM_MOUNT_POINT = "taskfs"

// The scheduler's view of a task's state (used by the GC executor).
enum ScheduleStatus {
  PENDING     = 0
  STARTING    = 1
  RUNNING     = 2
  FINISHED    = 3
  FAILED      = 4
  KILLED      = 5
  KILLING     = 6
  LOST        = 7
  ASSIGNED    = 9
  INIT        = 11
  RESTARTING  = 12
  PREEMPTING  = 13
  THROTTLED   = 16
  DRAINING    = 17
  PARTITIONED = 18
}

const set<ScheduleStatus> TERMINAL_STATES = [
  ScheduleStatus.FAILED, ScheduleStatus.FINISHED, ScheduleStatus.KILLED, ScheduleStatus.LOST]

const set<ScheduleStatus> LIVE_STATES = [
  ScheduleStatus.KILLING, ScheduleStatus.PREEMPTING, ScheduleStatus.RESTARTING,
  ScheduleStatus.DRAINING, ScheduleStatus.PARTITIONED, ScheduleStatus.RUNNING]

// Deprecated by Aurora in favour of JobKey; still sent.
struct Identity {
  2: string user
}

struct JobKey {
  1: string role
  2: string environment
  3: string name
}

struct ValueConstraint {
  1: bool negated
  2: set<string> (python.immutable = "") values
} (python.immutable = "")

struct LimitConstraint {
  1: i32 limit
} (python.immutable = "")

union TaskConstraint {
  1: ValueConstraint value
  2: LimitConstraint limit
} (python.immutable = "")

struct Constraint {
  1: string name
  2: TaskConstraint constraint
} (python.immutable = "")

struct Metadata {
  1: string key
  2: string value
} (python.immutable = "")

struct MesosFetcherURI {
  1: string value
  2: optional bool extract
  3: optional bool cache
  4: optional string outputFile
} (python.immutable = "")

// `data` is the client's MesosJob JSON (or a legacy MesosTaskInstance).
struct ExecutorConfig {
  1: string name
  2: string data
}

enum Mode {
  RW = 1
  RO = 2
}

struct Volume {
  1: string containerPath
  2: string hostPath
  3: Mode mode
}

struct DockerImage {
  1: string name
  2: string tag
}

struct AppcImage {
  1: string name
  2: string imageId
}

union Image {
  1: DockerImage docker
  2: AppcImage appc
}

struct MesosContainer {
  1: optional Image image
  2: optional list<Volume> volumes
}

struct DockerParameter {
  1: string name
  2: string value
}

struct DockerContainer {
  1: string image
  2: optional list<DockerParameter> parameters
}

union Container {
  1: MesosContainer mesos
  2: DockerContainer docker
}

union Resource {
  1: double numCpus
  2: i64 ramMb
  3: i64 diskMb
  4: string namedPort
  5: i64 numGpus
} (python.immutable = "")

struct PartitionPolicy {
  1: bool reschedule
  2: optional i64 delaySecs
}

struct PercentageSlaPolicy {
  1: double percentage
  2: i64 durationSecs
}

struct CountSlaPolicy {
  1: i64 count
  2: i64 durationSecs
}

struct CoordinatorSlaPolicy {
  1: string coordinatorUrl
  2: string statusKey
}

union SlaPolicy {
  1: PercentageSlaPolicy percentageSlaPolicy
  2: CountSlaPolicy countSlaPolicy
  3: CoordinatorSlaPolicy coordinatorSlaPolicy
}

// Elements of the sets below are immutable (hashable) in Python, or decoding them would fail.
// The executor reads job (28), executorConfig (25) and container (29).
struct TaskConfig {
  28: JobKey job
  17: Identity owner
   7: bool isService
  11: i32 priority
  13: i32 maxTaskFailures
  18: optional bool production
  30: optional string tier
  32: set<Resource> resources
  20: set<Constraint> constraints
  33: optional set<MesosFetcherURI> mesosFetcherUris
  22: optional map<string, string> taskLinks
  23: optional string contactEmail
  25: optional ExecutorConfig executorConfig
  27: optional set<Metadata> metadata
  34: optional PartitionPolicy partitionPolicy
  35: optional SlaPolicy slaPolicy
  29: optional Container container = {"mesos": {}}
}

// What TaskInfo.data holds for every Aurora task.
struct AssignedTask {
  1: string taskId
  2: string slaveId
  3: string slaveHost
  4: TaskConfig task
  5: map<string, i32> assignedPorts
  6: i32 instanceId
}

// The GC executor's TaskInfo.data: every task the scheduler believes is on this host.
struct AdjustRetainedTasks {
  2: map<string, ScheduleStatus> retainedTasks
}
