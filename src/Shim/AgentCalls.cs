using ShimV2.Ttrpc;

namespace ShimV2.Shim;

/// <summary>Runs an agent call and turns its failure into a domain error that says what was being done.</summary>
internal static class AgentCalls
{
    public static async Task<T> RunAsync<T>(string doing, Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (TtrpcException e)
        {
            throw Errors.Agent(doing, e);
        }
    }

    public static async Task RunAsync(string doing, Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (TtrpcException e)
        {
            throw Errors.Agent(doing, e);
        }
    }
}
