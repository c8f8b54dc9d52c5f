namespace ShimV2.Cli;

/// <summary>The shim's OOM score is containerd's + 1, so the OOM killer picks the shim before containerd.</summary>
internal static class OomScore
{
    public const string ParentScoreVariable = "CSHARP_SHIM_PARENT_OOM_SCORE_ADJ";

    public static int? Read(int pid)
    {
        try
        {
            return int.Parse(File.ReadAllText($"/proc/{pid}/oom_score_adj").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Sets our own score; returns the error text when not permitted (root without CAP_SYS_RESOURCE).</summary>
    public static string? AdjustSelf(int containerdScore)
    {
        var score = Math.Min(1000, containerdScore + 1);
        try
        {
            File.WriteAllText("/proc/self/oom_score_adj", score.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return e.Message;
        }
    }
}
