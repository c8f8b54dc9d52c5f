namespace ShimV2.Shim.Events;

/// <summary>containerd's task event topics and the Any type names 1.6 looks up exactly.</summary>
public static class EventTopics
{
    public const string TaskCreate = "/tasks/create";
    public const string TaskStart = "/tasks/start";
    public const string TaskExit = "/tasks/exit";
    public const string TaskDelete = "/tasks/delete";
    public const string TaskOom = "/tasks/oom";
    public const string TaskExecAdded = "/tasks/exec-added";
    public const string TaskExecStarted = "/tasks/exec-started";
    public const string TaskPaused = "/tasks/paused";
    public const string TaskResumed = "/tasks/resumed";
}
