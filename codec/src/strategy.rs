//! proptest strategies that generate valid packets for a protocol level, properties included,
//! for the round-trip, split and mutation tests in `decode.rs`.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::{
    Auth, ByteStr, ConnAck, Connect, Disconnect, LastWill, Packet, PacketId, PacketType,
    Properties, PropertyId, PropertyPlace, Protocol, PubAck, PubComp, PubRec, PubRel, Publish, QoS,
    ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};

pub(crate) fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::V310),
        Just(Protocol::V311),
        Just(Protocol::V500)
    ]
}

/// Any MQTT string: UTF-8 without U+0000, multi-byte characters included.
fn text() -> impl Strategy<Value = ByteStr> {
    r"[^\x00]{0,12}".prop_map(ByteStr::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn topic_name() -> impl Strategy<Value = ByteStr> {
    r"[^\x00+#]{1,16}".prop_map(ByteStr::from)
}

fn topic_filter() -> impl Strategy<Value = ByteStr> {
    let level = prop_oneof![Just("+".to_owned()), r"[^\x00+#/]{0,4}"];
    (vec(level, 1..4), any::<bool>()).prop_map(|(levels, hash)| {
        let mut filter = levels.join("/");
        if filter.is_empty() && !hash {
            filter.push('+');
        }
        if hash {
            filter.push_str("/#");
        }
        ByteStr::from(filter)
    })
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|id| PacketId::new(id).expect("non-zero"))
}

/// The reason codes valid in `packet_type`.
fn code(packet_type: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = (0..=u8::MAX)
        .filter_map(ReasonCode::from_u8)
        .filter(|code| code.allowed_in(packet_type))
        .collect();
    select(codes)
}

/// One property allowed in `place`, with the raw material for a valid value.
fn property(
    place: PropertyPlace,
) -> impl Strategy<Value = (PropertyId, u32, ByteStr, ByteStr, Bytes, ByteStr)> {
    let ids: Vec<PropertyId> = (0..=u8::MAX)
        .filter_map(PropertyId::from_u8)
        .filter(|id| id.allowed_in(place))
        .collect();
    (
        select(ids),
        any::<u32>(),
        text(),
        text(),
        binary(),
        topic_name(),
    )
}

/// Properties valid in `place`.
pub(crate) fn properties(place: PropertyPlace) -> impl Strategy<Value = Properties> {
    vec(property(place), 0..6).prop_map(move |items| {
        use PropertyId::*;
        let mut props = Properties::default();
        for (id, number, name, value, data, topic) in items {
            let flag = (number % 2) as u8;
            let non_zero_u16 = (number % 65_535) as u16 + 1;
            match id {
                PayloadFormatIndicator => props.payload_format_indicator = Some(flag),
                MessageExpiryInterval => props.message_expiry_interval = Some(number),
                ContentType => props.content_type = Some(name),
                ResponseTopic => props.response_topic = Some(topic),
                CorrelationData => props.correlation_data = Some(data),
                SubscriptionIdentifier => {
                    let id = number % 268_435_455 + 1;
                    if place == PropertyPlace::Packet(PacketType::Publish) {
                        props.subscription_identifiers.push(id);
                    } else {
                        props.subscription_identifiers = vec![id];
                    }
                }
                SessionExpiryInterval => props.session_expiry_interval = Some(number),
                AssignedClientIdentifier => props.assigned_client_identifier = Some(name),
                ServerKeepAlive => props.server_keep_alive = Some(number as u16),
                AuthenticationMethod => props.authentication_method = Some(name),
                AuthenticationData => props.authentication_data = Some(data),
                RequestProblemInformation => props.request_problem_information = Some(flag),
                WillDelayInterval => props.will_delay_interval = Some(number),
                RequestResponseInformation => props.request_response_information = Some(flag),
                ResponseInformation => props.response_information = Some(name),
                ServerReference => props.server_reference = Some(name),
                ReasonString => props.reason_string = Some(name),
                ReceiveMaximum => props.receive_maximum = Some(non_zero_u16),
                TopicAliasMaximum => props.topic_alias_maximum = Some(number as u16),
                TopicAlias => props.topic_alias = Some(non_zero_u16),
                MaximumQoS => props.maximum_qos = Some(flag),
                RetainAvailable => props.retain_available = Some(flag),
                UserProperty => props.user.push((name, value)),
                MaximumPacketSize => props.maximum_packet_size = Some(number.max(1)),
                WildcardSubscriptionAvailable => props.wildcard_subscription_available = Some(flag),
                SubscriptionIdentifierAvailable => {
                    props.subscription_identifier_available = Some(flag)
                }
                SharedSubscriptionAvailable => props.shared_subscription_available = Some(flag),
            }
        }
        // Authentication data needs a method.
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            props.authentication_method = Some("method".into());
        }
        props
    })
}

/// Properties for `place` at `protocol`: none before MQTT 5.
fn properties_at(protocol: Protocol, place: PropertyPlace) -> BoxedStrategy<Properties> {
    if protocol.is_v5() {
        properties(place).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn at(packet_type: PacketType) -> PropertyPlace {
    PropertyPlace::Packet(packet_type)
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let will = (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        properties_at(protocol, PropertyPlace::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        proptest::option::of(will),
        proptest::option::of(text()),
        proptest::option::of(binary()),
        properties_at(protocol, at(PacketType::Connect)),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // A password needs a user name before MQTT 5 [MQTT-3.1.2-22].
                let password = if protocol.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack(protocol: Protocol) -> BoxedStrategy<Packet> {
    let code = if protocol.is_v5() {
        code(PacketType::ConnAck).boxed()
    } else {
        (0u8..=5)
            .prop_filter_map("v3 code", ReasonCode::from_v3_connack)
            .boxed()
    };
    (
        any::<bool>(),
        code,
        properties_at(protocol, at(PacketType::ConnAck)),
    )
        .prop_map(move |(session_present, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: session_present && protocol != Protocol::V310,
                code,
                properties,
            })
        })
        .boxed()
}

pub(crate) fn publish(protocol: Protocol) -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        properties_at(protocol, at(PacketType::Publish)),
        binary(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, empty_topic, id, properties, payload)| {
                let qos0 = qos == QoS::AtMostOnce;
                // An empty topic needs a topic alias (MQTT 5 only).
                let topic = if empty_topic && properties.topic_alias.is_some() {
                    ByteStr::default()
                } else {
                    topic
                };
                Publish {
                    // DUP on QoS 0 is allowed only in 3.1 [MQTT-3.3.1-2].
                    dup: dup && (!qos0 || protocol == Protocol::V310),
                    qos,
                    retain,
                    topic,
                    packet_id: if qos0 { None } else { Some(id) },
                    properties,
                    payload,
                }
            },
        )
}

fn ack(protocol: Protocol, packet_type: PacketType) -> BoxedStrategy<Packet> {
    let code = if protocol.is_v5() {
        code(packet_type).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (packet_id(), code, properties_at(protocol, at(packet_type)))
        .prop_map(move |(packet_id, code, properties)| match packet_type {
            PacketType::PubAck => Packet::PubAck(PubAck {
                packet_id,
                code,
                properties,
            }),
            PacketType::PubRec => Packet::PubRec(PubRec {
                packet_id,
                code,
                properties,
            }),
            PacketType::PubRel => Packet::PubRel(PubRel {
                packet_id,
                code,
                properties,
            }),
            _ => Packet::PubComp(PubComp {
                packet_id,
                code,
                properties,
            }),
        })
        .boxed()
}

fn subscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let options = (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        move |(qos, no_local, retain_as_published, retain_handling)| {
            if !protocol.is_v5() {
                return SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                };
            }
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling: match retain_handling {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            }
        },
    );
    // Any string: invalid filters are kept for the broker to refuse one by one.
    let filter =
        (prop_oneof![text(), topic_filter()], options).prop_map(|(filter, mut options)| {
            if filter.starts_with("$share/") {
                options.no_local = false;
            }
            SubscribeFilter { filter, options }
        });
    (
        packet_id(),
        vec(filter, 1..4),
        properties_at(protocol, at(PacketType::Subscribe)),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn suback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let code = if protocol.is_v5() {
        code(PacketType::SubAck).boxed()
    } else {
        select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed()
    };
    (
        packet_id(),
        vec(code, 1..5),
        properties_at(protocol, at(PacketType::SubAck)),
    )
        .prop_map(|(packet_id, codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                codes,
                properties,
            })
        })
}

fn unsubscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec(topic_filter(), 1..4),
        properties_at(protocol, at(PacketType::Unsubscribe)),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn unsuback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let codes = if protocol.is_v5() {
        vec(code(PacketType::UnsubAck), 1..4).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (
        packet_id(),
        codes,
        properties_at(protocol, at(PacketType::UnsubAck)),
    )
        .prop_map(|(packet_id, codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                codes,
                properties,
            })
        })
}

fn disconnect(protocol: Protocol) -> BoxedStrategy<Packet> {
    if !protocol.is_v5() {
        return Just(Packet::Disconnect(Disconnect::default())).boxed();
    }
    (
        code(PacketType::Disconnect),
        properties(at(PacketType::Disconnect)),
    )
        .prop_map(|(code, properties)| Packet::Disconnect(Disconnect { code, properties }))
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    (code(PacketType::Auth), properties(at(PacketType::Auth))).prop_map(|(code, mut properties)| {
        // Only the short form may leave out the authentication method (§3.15.2.2.2).
        let short = code == ReasonCode::Success && properties.is_empty();
        if !short && properties.authentication_method.is_none() {
            properties.authentication_method = Some("SCRAM-SHA-1".into());
        }
        Packet::Auth(Auth { code, properties })
    })
}

/// Any valid packet for `protocol`.
pub(crate) fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let mut arms = vec![
        connect(protocol).boxed(),
        connack(protocol),
        publish(protocol).prop_map(Packet::Publish).boxed(),
        ack(protocol, PacketType::PubAck),
        ack(protocol, PacketType::PubRec),
        ack(protocol, PacketType::PubRel),
        ack(protocol, PacketType::PubComp),
        subscribe(protocol).boxed(),
        suback(protocol).boxed(),
        unsubscribe(protocol).boxed(),
        unsuback(protocol).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(protocol),
    ];
    if protocol.is_v5() {
        arms.push(auth().boxed());
    }
    proptest::strategy::Union::new(arms).boxed()
}

/// A level and a valid packet for it.
pub(crate) fn any_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    protocol().prop_flat_map(|protocol| (Just(protocol), packet(protocol)))
}
