"""Information element numbers used by the decoders (IANA IPFIX registry, RFC 7012;
NetFlow v9 field types below 128 share the numbering, RFC 3954 §8).

Field keys: an IANA element is its number; an enterprise element is `pen << 16 | number`
(RFC 7011 §3.2). NetFlow v9 options *scope* fields use their own type space (RFC 3954 §6.1),
kept apart as `V9_SCOPE | type`.
"""

from __future__ import annotations

VARLEN = 65535  # RFC 7011 §7: template length of a variable-length field
REVERSE_PEN = 29305  # RFC 5103 §6.1: reverse information elements
V9_SCOPE = 0xFFFF_0000_0000  # key space for v9 options scope field types


def key(element: int, pen: int = 0) -> int:
    return (pen << 16) | element if pen else element


def reverse(element: int) -> int:
    return key(element, REVERSE_PEN)


# Flow keys
protocolIdentifier = 4
sourceTransportPort = 7
sourceIPv4Address = 8
ingressInterface = 10
destinationTransportPort = 11
destinationIPv4Address = 12
egressInterface = 14
sourceIPv6Address = 27
destinationIPv6Address = 28
# Counters
octetDeltaCount = 1
packetDeltaCount = 2
postOctetDeltaCount = 23
postPacketDeltaCount = 24
initiatorOctets = 231
responderOctets = 232
initiatorPackets = 298
responderPackets = 299
# Time
flowEndSysUpTime = 21
flowStartSysUpTime = 22
flowStartSeconds = 150
flowEndSeconds = 151
flowStartMilliseconds = 152
flowEndMilliseconds = 153
flowStartMicroseconds = 154
flowEndMicroseconds = 155
flowStartNanoseconds = 156
flowEndNanoseconds = 157
flowStartDeltaMicroseconds = 158
flowEndDeltaMicroseconds = 159
systemInitTimeMilliseconds = 160
# Sampling (options data or per record)
samplingInterval = 34
samplingAlgorithm = 35
samplerId = 48
samplerMode = 49
samplerRandomInterval = 50
selectorId = 302
samplingPacketInterval = 305
samplingPacketSpace = 306
samplingSize = 309
samplingPopulation = 310
# Names and applications
# packet sections: the sampled packet itself (RFC 7133 §5, IANA), parsed by collector.sflow.headers
ipTotalLength = 224
dataLinkFrameSize = 312
ipHeaderPacketSection = 313
dataLinkFrameSection = 315
sectionExportedOctets = 410
PACKET_SECTIONS = (dataLinkFrameSection, ipHeaderPacketSection)

interfaceName = 82
interfaceDescription = 83
applicationDescription = 94
applicationId = 95
applicationName = 96

# NetFlow v9 options scope types (RFC 3954 §6.1)
V9_SCOPE_SYSTEM = V9_SCOPE | 1
V9_SCOPE_INTERFACE = V9_SCOPE | 2
V9_SCOPE_LINECARD = V9_SCOPE | 3
V9_SCOPE_CACHE = V9_SCOPE | 4
V9_SCOPE_TEMPLATE = V9_SCOPE | 5

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

# What the decoder reads, for the template checks (`templates.refusal`): a field of one of these
# elements must be 1..max octets (integers: reduced-size up to native, RFC 7011 §6.2, and odd
# widths up to 8 are read; addresses: their native width or less), never zero-length nor
# variable-length. applicationId (octetArray) may be of any non-zero length.
_INTEGERS = (octetDeltaCount, packetDeltaCount, postOctetDeltaCount, postPacketDeltaCount, initiatorOctets,
             responderOctets, initiatorPackets, responderPackets, reverse(octetDeltaCount),
             reverse(packetDeltaCount), protocolIdentifier, sourceTransportPort, destinationTransportPort,
             ingressInterface, egressInterface, flowEndSysUpTime, flowStartSysUpTime,
             *range(flowStartSeconds, systemInitTimeMilliseconds + 1), samplingInterval, samplerId,
             samplerRandomInterval, selectorId, samplingPacketInterval, samplingPacketSpace, samplingSize,
             samplingPopulation, ipTotalLength, dataLinkFrameSize, sectionExportedOctets)
READ_WIDTH: dict[int, int] = {**{k: 8 for k in _INTEGERS}, sourceIPv4Address: 4, destinationIPv4Address: 4,
                              sourceIPv6Address: 16, destinationIPv6Address: 16, applicationId: VARLEN,
                              dataLinkFrameSection: VARLEN, ipHeaderPacketSection: VARLEN}
# The server name an exporter saw (TLS SNI, HTTP Host), by exporter (docs/classification.md):
# element key -> octets before the name in its value. Checked with tshark, which names the ntop and
# Cisco ones; ipfixprobe's from its field list. A template with one of them takes the slow path.
SERVER_NAMES = {
    key(188, 35632): 0,  # ntop nProbe SSL_SERVER_NAME (TLS SNI)
    key(187, 35632): 0,  # ntop nProbe HTTP_HOST
    key(808, 8057): 0,  # CESNET ipfixprobe TLS_SNI
    key(1, 39499): 0,  # CESNET ipfixprobe HTTP_DOMAIN (Flowmon's PEN)
    key(12235, 9): 6,  # Cisco AVC "application http host": 4 octets application, 2 sub-application, the host
}
NAME_ENGINE = 0  # server names ride in the app_id column as engine 0 (RFC 6759: no real engine) | a hash
# a data template carries a flow when it has one of these (an address of its width, or a counter)
FLOW_ADDRESSES = {sourceIPv4Address: 4, destinationIPv4Address: 4, sourceIPv6Address: 16, destinationIPv6Address: 16}
FLOW_COUNTERS = frozenset((octetDeltaCount, packetDeltaCount, postOctetDeltaCount, postPacketDeltaCount, 85, 86,
                           initiatorOctets, responderOctets, initiatorPackets, responderPackets,
                           reverse(octetDeltaCount), reverse(packetDeltaCount)))
