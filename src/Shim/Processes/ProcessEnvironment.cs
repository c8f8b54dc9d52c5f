using Microsoft.Extensions.Logging;
using ShimV2.Shim.Events;
using ShimV2.Shim.Sandbox;

namespace ShimV2.Shim.Processes;

/// <summary>What a process needs to act on its own: the pod's VM (agent), where events go, and a logger.</summary>
public sealed record ProcessEnvironment(ISandbox Sandbox, IEventSink Events, ILogger Logger);
