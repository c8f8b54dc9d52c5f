using Google.Protobuf;

namespace ShimV2.Shim.Events;

/// <summary>Where the task service sends events; published in the order they were queued.</summary>
public interface IEventSink
{
    void Publish(string topic, IMessage message);
}
