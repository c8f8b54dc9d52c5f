using ShimV2.Ttrpc;

namespace ShimV2.Shim;

/// <summary>The errors the task API returns; containerd maps these codes to its errdefs.</summary>
internal static class Errors
{
    public static TtrpcException NotFound(string what) => new(TtrpcStatusCode.NotFound, what);

    public static TtrpcException TaskNotFound(string id) => new(TtrpcStatusCode.NotFound, $"task {id} not found");

    public static TtrpcException ExecNotFound(string id, string execId) =>
        new(TtrpcStatusCode.NotFound, $"exec {execId} of task {id} not found");

    public static TtrpcException AlreadyExists(string what) => new(TtrpcStatusCode.AlreadyExists, what);

    public static TtrpcException InvalidArgument(string what) => new(TtrpcStatusCode.InvalidArgument, what);

    public static TtrpcException FailedPrecondition(string what) => new(TtrpcStatusCode.FailedPrecondition, what);

    public static TtrpcException Unimplemented(string what) => new(TtrpcStatusCode.Unimplemented, what);

    public static TtrpcException Unavailable(string what) => new(TtrpcStatusCode.Unavailable, what);
}
