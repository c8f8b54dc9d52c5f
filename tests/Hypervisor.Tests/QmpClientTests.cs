using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;

namespace ShimV2.Hypervisor.Tests;

/// <summary>QmpClient against a scripted QMP peer on a unix socket.</summary>
public sealed class QmpClientTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly TestDirectory dir = new("qmp");
    private readonly FakeQmpServer server;
    private readonly CancellationTokenSource cts = new(Timeout);

    public QmpClientTests()
    {
        server = new FakeQmpServer(dir.Path);
    }

    private CancellationToken Ct => cts.Token;

    public void Dispose()
    {
        server.Dispose();
        dir.Dispose();
        cts.Dispose();
    }

    [Fact]
    public async Task Connect_reads_the_greeting_and_sends_qmp_capabilities_first()
    {
        var connect = QmpClient.ConnectAsync(server.SocketPath, NullLogger.Instance, Ct);
        await using var peer = await server.AcceptAsync(Ct);
        await peer.SendAsync(FakeQmpServer.Greeting, Ct);

        var first = await peer.ReceiveAsync(Ct);
        Assert.Equal("qmp_capabilities", first.Execute);
        Assert.NotNull(first.Id);
        Assert.Null(first.Arguments);
        Assert.False(connect.IsCompleted, "connect must wait for the capabilities reply");
        await peer.ReplyAsync(first, "{}", Ct);

        await using var client = await connect;
        Assert.Equal(new QmpVersionTriple(7, 2, 0), client.Greeting.Version.Qemu);
        Assert.Equal("Debian 1:7.2+dfsg-7", client.Greeting.Version.Package);
        Assert.Equal(["oob"], client.Greeting.Capabilities);
    }

    [Fact]
    public async Task A_command_gets_its_typed_reply()
    {
        var (client, peer) = await ConnectAsync();
        await using (client)
        await using (peer)
        {
            var status = client.ExecuteAsync(new QueryStatus(), Ct);
            var sent = await peer.ExpectAsync("query-status", """{"status": "running", "singlestep": false, "running": true}""", Ct);

            Assert.Equal(new QmpStatusInfo(true, "running"), await status);
            Assert.Matches("""^\{"execute":"query-status","id":\d+\}$""", sent.Line);
        }
    }

    [Fact]
    public async Task An_event_before_the_reply_goes_to_Events_and_the_reply_to_the_command()
    {
        var (client, peer) = await ConnectAsync();
        await using (client)
        await using (peer)
        {
            var stop = client.ExecuteAsync(new Stop(), Ct);
            var sent = await peer.ReceiveAsync(Ct);
            Assert.Equal("stop", sent.Execute);
            await peer.EventAsync("STOP", null, Ct);
            await peer.EventAsync("SHUTDOWN", """{"guest": false, "reason": "host-qmp-quit"}""", Ct);
            Assert.False(stop.IsCompleted, "an event is not a reply");
            await peer.ReplyAsync(sent, "{}", Ct);

            Assert.Same(QmpEmpty.Instance, await stop);
            var first = await client.Events.ReadAsync(Ct);
            Assert.Equal("STOP", first.Name);
            Assert.False(first.HasData);
            Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1700000000).AddMilliseconds(250), first.Timestamp);
            var second = await client.Events.ReadAsync(Ct);
            Assert.Equal("SHUTDOWN", second.Name);
            Assert.Equal("host-qmp-quit", second.Data.GetProperty("reason").GetString());
        }
    }

    [Fact]
    public async Task An_error_reply_throws_QmpException_with_class_and_description()
    {
        var (client, peer) = await ConnectAsync();
        await using (client)
        await using (peer)
        {
            var add = client.ExecuteAsync(new PcDimmAdd("dimm1", "mem1"), Ct);
            var sent = await peer.ReceiveAsync(Ct);
            await peer.ErrorAsync(sent, "GenericError", "Device 'dimm1' already exists", Ct);

            var e = await Assert.ThrowsAsync<QmpException>(() => add);
            Assert.Equal("device_add", e.Command);
            Assert.Equal("GenericError", e.ErrorClass);
            Assert.Equal("Device 'dimm1' already exists", e.Description);
            Assert.Equal("qmp device_add failed: Device 'dimm1' already exists (GenericError)", e.Message);
        }
    }

    [Fact]
    public async Task Replies_are_matched_by_id_not_by_order()
    {
        var (client, peer) = await ConnectAsync();
        await using (client)
        await using (peer)
        {
            var status = client.ExecuteAsync(new QueryStatus(), Ct);
            var first = await peer.ReceiveAsync(Ct);
            var cpus = client.ExecuteAsync(new QueryCpusFast(), Ct);
            var second = await peer.ReceiveAsync(Ct);

            await peer.ReplyAsync(second, "[]", Ct);
            Assert.Empty(await cpus);
            Assert.False(status.IsCompleted);
            await peer.ReplyAsync(first, """{"status": "paused", "running": false}""", Ct);
            Assert.Equal(new QmpStatusInfo(false, "paused"), await status);
        }
    }

    [Fact]
    public async Task A_dropped_connection_fails_pending_and_later_commands_and_completes_Events()
    {
        var (client, peer) = await ConnectAsync();
        await using (client)
        await using (peer)
        {
            var pending1 = client.ExecuteAsync(new QueryStatus(), Ct);
            var pending2 = client.ExecuteAsync(new Cont(), Ct);
            await peer.ReceiveAsync(Ct);
            await peer.ReceiveAsync(Ct);
            peer.Drop();

            await Assert.ThrowsAsync<QmpConnectionClosedException>(() => pending1);
            await Assert.ThrowsAsync<QmpConnectionClosedException>(() => pending2);
            await client.Completion.WaitAsync(Ct);
            var later = await Assert.ThrowsAsync<QmpConnectionClosedException>(() => client.ExecuteAsync(new QueryStatus(), Ct));
            Assert.Contains("query-status", later.Message, StringComparison.Ordinal);
            Assert.False(await client.Events.WaitToReadAsync(Ct));
        }
    }

    [Fact]
    public async Task A_connection_closed_before_the_greeting_is_a_clear_error()
    {
        var connect = QmpClient.ConnectAsync(server.SocketPath, NullLogger.Instance, Ct);
        var peer = await server.AcceptAsync(Ct);
        peer.Drop();
        await peer.DisposeAsync();

        var e = await Assert.ThrowsAsync<QmpConnectionClosedException>(() => connect);
        Assert.Equal("qmp connection closed before the greeting", e.Message);
    }

    [Fact]
    public async Task Something_that_is_not_a_greeting_is_refused()
    {
        var connect = QmpClient.ConnectAsync(server.SocketPath, NullLogger.Instance, Ct);
        await using var peer = await server.AcceptAsync(Ct);
        await peer.SendAsync("""{"hello": "world"}""", Ct);

        var e = await Assert.ThrowsAsync<HypervisorException>(() => connect);
        Assert.StartsWith("not a qmp greeting: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_cancelled_command_does_not_disturb_the_next_one()
    {
        var (client, peer) = await ConnectAsync();
        await using (client)
        await using (peer)
        {
            using var cancel = new CancellationTokenSource();
            var abandoned = client.ExecuteAsync(new QueryStatus(), cancel.Token);
            var first = await peer.ReceiveAsync(Ct);
            await cancel.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);

            var next = client.ExecuteAsync(new QueryStatus(), Ct);
            var second = await peer.ReceiveAsync(Ct);
            await peer.ReplyAsync(first, """{"status": "running", "running": true}""", Ct);
            await peer.ReplyAsync(second, """{"status": "paused", "running": false}""", Ct);
            Assert.Equal(new QmpStatusInfo(false, "paused"), await next);
        }
    }

    public static TheoryData<string, Func<string>> Encodings => new()
    {
        { """{"execute":"qmp_capabilities","id":7}""", () => Encode(new QmpCapabilities()) },
        { """{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":7}""", () => Encode(new QmpCapabilities(["oob"])) },
        { """{"execute":"query-status","id":7}""", () => Encode(new QueryStatus()) },
        { """{"execute":"stop","id":7}""", () => Encode(new Stop()) },
        { """{"execute":"cont","id":7}""", () => Encode(new Cont()) },
        { """{"execute":"quit","id":7}""", () => Encode(new Quit()) },
        { """{"execute":"system_powerdown","id":7}""", () => Encode(new SystemPowerdown()) },
        { """{"execute":"query-hotpluggable-cpus","id":7}""", () => Encode(new QueryHotpluggableCpus()) },
        { """{"execute":"query-cpus-fast","id":7}""", () => Encode(new QueryCpusFast()) },
        { """{"execute":"query-memory-devices","id":7}""", () => Encode(new QueryMemoryDevices()) },
        { """{"execute":"query-memory-size-summary","id":7}""", () => Encode(new QueryMemorySizeSummary()) },
        {
            """{"execute":"device_add","arguments":{"driver":"max-x86_64-cpu","id":"vcpu1","socket-id":1,"core-id":0,"thread-id":0},"id":7}""",
            () => Encode(new CpuDeviceAdd("max-x86_64-cpu", "vcpu1", new QmpCpuInstanceProperties(SocketId: 1, CoreId: 0, ThreadId: 0)))
        },
        {
            """{"execute":"object-add","arguments":{"qom-type":"memory-backend-ram","id":"mem1","size":268435456},"id":7}""",
            () => Encode(new MemoryBackendRamAdd("mem1", 256L << 20))
        },
        {
            """{"execute":"object-add","arguments":{"qom-type":"memory-backend-memfd","id":"mem2","size":134217728,"share":true},"id":7}""",
            () => Encode(new MemoryBackendMemfdAdd("mem2", 128L << 20))
        },
        {
            """{"execute":"device_add","arguments":{"driver":"pc-dimm","id":"dimm1","memdev":"mem1"},"id":7}""",
            () => Encode(new PcDimmAdd("dimm1", "mem1"))
        },
        { """{"execute":"device_del","arguments":{"id":"dimm1"},"id":7}""", () => Encode(new DeviceDel("dimm1")) },
        { """{"execute":"object-del","arguments":{"id":"mem1"},"id":7}""", () => Encode(new ObjectDel("mem1")) },
        {
            """{"execute":"device_add","arguments":{"driver":"virtio-rng-pci","id":"rng1","bus":"pcie.0"},"id":7}""",
            () => Encode(new DeviceAdd("virtio-rng-pci", "rng1", new System.Text.Json.Nodes.JsonObject { ["bus"] = "pcie.0" }))
        },
        {
            """{"execute":"human-monitor-command","arguments":{"command-line":"info mtree"},"id":7}""",
            () => Encode(new QmpRawCommand("human-monitor-command", new System.Text.Json.Nodes.JsonObject { ["command-line"] = "info mtree" }))
        },
    };

    [Theory]
    [MemberData(nameof(Encodings))]
    public void Each_command_record_encodes_to_its_QMP_wire_form(string expected, Func<string> encode)
    {
        Assert.Equal(expected + "\n", encode());
    }

    [Fact]
    public void Extra_properties_cannot_shadow_the_command_s_own()
    {
        var command = new DeviceAdd("pc-dimm", "d", new System.Text.Json.Nodes.JsonObject { ["id"] = "other" });
        var e = Assert.Throws<ArgumentException>(() => Encode(command));
        Assert.Contains("\"id\"", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Hotplug_query_results_decode_from_QEMU_7_2_output()
    {
        var slots = Read(new QueryHotpluggableCpus(), """
            [{"props": {"core-id": 0, "thread-id": 0, "socket-id": 1}, "vcpus-count": 1, "type": "max-x86_64-cpu"},
             {"props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1, "qom-path": "/machine/unattached/device[0]", "type": "max-x86_64-cpu"}]
            """);
        Assert.Equal(2, slots.Count);
        Assert.Null(slots[0].QomPath);
        Assert.Equal(new QmpCpuInstanceProperties(SocketId: 1, CoreId: 0, ThreadId: 0), slots[0].Props);
        Assert.Equal("max-x86_64-cpu", slots[0].Type);
        Assert.Equal("/machine/unattached/device[0]", slots[1].QomPath);

        var cpus = Read(new QueryCpusFast(), """
            [{"thread-id": 4242, "props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"}]
            """);
        Assert.Equal(new QmpCpuInfoFast(0, "/machine/unattached/device[0]", 4242, new QmpCpuInstanceProperties(SocketId: 0, CoreId: 0, ThreadId: 0), "x86_64"), cpus.Single());

        var devices = Read(new QueryMemoryDevices(), """
            [{"type": "dimm", "data": {"memdev": "/objects/mem1", "hotplugged": true, "addr": 4294967296, "hotpluggable": true, "size": 134217728, "slot": 0, "node": 0, "id": "dimm1"}}]
            """);
        Assert.Equal(new QmpMemoryDevice("dimm", new QmpMemoryDeviceData("dimm1", 4294967296, 134217728, 0, 0, "/objects/mem1", true, true)), devices.Single());

        Assert.Equal(new QmpMemorySizeSummary(536870912, 134217728), Read(new QueryMemorySizeSummary(), """{"base-memory": 536870912, "plugged-memory": 134217728}"""));
    }

    [Fact]
    public void Query_migrate_reads_its_status_and_refuses_other_shapes_clearly()
    {
        Assert.Equal(new QmpMigrationInfo("completed", null), Read(new QueryMigrate(), """{"status": "completed", "total-time": 12}"""));
        Assert.Equal(new QmpMigrationInfo("failed", "Unable to write"), Read(new QueryMigrate(), """{"status": "failed", "error-desc": "Unable to write"}"""));
        Assert.Equal(new QmpMigrationInfo("none", null), Read(new QueryMigrate(), "{}"));
        foreach (var odd in new[] { "[]", "3", "\"completed\"", """{"status": 1}""", """{"status": "failed", "error-desc": {}}""" })
        {
            var e = Assert.Throws<HypervisorException>(() => Read(new QueryMigrate(), odd));
            Assert.StartsWith("qmp query-migrate: ", e.Message, StringComparison.Ordinal);
        }
    }

    private static string Encode<T>(QmpCommand<T> command) => Encoding.UTF8.GetString(QmpClient.Encode(command, 7));

    private static T Read<T>(QmpCommand<T> command, string json)
    {
        using var doc = JsonDocument.Parse(json);
        return command.ReadResult(doc.RootElement);
    }

    private async Task<(QmpClient Client, FakeQmpServer.Connection Peer)> ConnectAsync()
    {
        var connect = QmpClient.ConnectAsync(server.SocketPath, NullLogger.Instance, Ct);
        var peer = await server.AcceptAsync(Ct);
        await peer.HandshakeAsync(Ct);
        return (await connect, peer);
    }
}
