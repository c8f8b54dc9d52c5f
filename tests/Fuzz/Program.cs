using SharpFuzz;
using ShimV2.Fuzz;

// usage: ShimV2.Fuzz TARGET            run under afl-fuzz (SharpFuzz's persistent loop; input from AFL)
//        ShimV2.Fuzz TARGET FILE...    run each file once (reproduce a crash); exit 1 when one fails
if (args.Length == 0 || !FuzzTargets.All.TryGetValue(args[0], out var target))
{
    Console.Error.WriteLine($"usage: ShimV2.Fuzz TARGET [FILE...]; targets: {string.Join(' ', FuzzTargets.All.Keys)}");
    return 2;
}

if (args.Length == 1)
{
    Fuzzer.Run(stream =>
    {
        using var input = new MemoryStream();
        stream.CopyTo(input);
        target(input.GetBuffer().AsSpan(0, (int)input.Length));
    });
    return 0;
}

var failed = 0;
foreach (var file in args.Skip(1))
{
    try
    {
        target(File.ReadAllBytes(file));
    }
    catch (Exception e)
    {
        failed++;
        Console.Error.WriteLine($"{file}: {e}");
    }
}

return failed == 0 ? 0 : 1;
