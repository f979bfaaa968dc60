//! The per-client MQTT state machine, sans I/O.
//!
//! A [`Session`] owns everything MQTT says a server keeps for one client id: its subscriptions,
//! the outgoing QoS 1/2 flows (packet ids, the inflight window, the queue behind it), and the
//! incoming QoS 2 packet ids awaiting PUBREL. It never touches a socket and never reads a clock:
//! the driver feeds it packets and deliveries, and it appends encoded bytes to its own [`Outbox`],
//! which the connection's writer drains ([`Session::poll_transmit`]); one input is one borrow. This makes every QoS flow testable in memory and lets a
//! persistent session outlive its connection and move between shards as plain data
//! ([`Session`] is `Send`).
//!
//! MQTT 5 Message Expiry Interval: a message carries the instant it expires ([`Message::expires_at`],
//! set by the router from the time of its arrival). The session reads no clock: the router tells
//! it the time of the input being handled ([`Session::handle_time`]). A message whose expiry has
//! come before it is sent (queued offline or behind the window) is dropped and counted
//! [MQTT-3.3.2-5]; one sent later than it arrived carries the interval that remains
//! [MQTT-3.3.2-6]. A message already sent stays in flight until acknowledged.
//!
//! Retransmission follows MQTT 3.1.1 §4.4: over TCP nothing is resent on a timer; unacknowledged
//! PUBLISH (with DUP) and PUBREL are resent when a persistent session reconnects [MQTT-4.4.0-1].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hashbrown::{HashMap, HashSet};
use shardmq_codec::{
    encode, ByteStr, Packet, PacketId, Properties, Protocol, PubAck, PubComp, PubRec, PubRel,
    Publish, PublishHeader, QoS, ReasonCode, SubscriptionOptions,
};

/// A message as routed between shards and queued for subscribers: immutable and shared, so one
/// publish fans out to any number of sessions by reference count.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Message {
    /// Topic name.
    pub topic: ByteStr,
    /// Payload, shared with every delivery.
    pub payload: Bytes,
    /// QoS the publisher used.
    pub qos: QoS,
    /// RETAIN flag as published.
    pub retain: bool,
    /// MQTT 5 properties forwarded to subscribers (topic alias and subscription ids removed).
    pub properties: Properties,
    /// When the message expires (its MQTT 5 Message Expiry Interval counted from its arrival at
    /// the broker); `None` never.
    pub expires_at: Option<Instant>,
}

/// Limits a session enforces. Copied into each session so it never looks anything up.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Maximum unacknowledged outgoing QoS 1/2 messages.
    pub inflight: u16,
    /// Maximum messages queued for an offline persistent session.
    pub max_queued: usize,
    /// Maximum QoS 1/2 messages queued behind the inflight window of a connected client. Much
    /// larger than `max_queued`: a connected subscriber is working through its queue, and a
    /// queued message costs a reference to the shared message, not a copy of its payload.
    pub max_queued_online: usize,
    /// Whether QoS 0 messages are queued for an offline persistent session.
    pub queue_qos0_offline: bool,
    /// Bytes the outbox may hold before the client counts as a slow consumer.
    pub max_outbox_bytes: usize,
    /// Payload bytes the queue may hold, online or offline, whatever the message count.
    pub max_queued_bytes: usize,
    /// The broker's MQTT 5 Receive Maximum: incoming QoS 2 flows (PUBREC sent, PUBREL not yet
    /// received) an MQTT 5 client may have open; one more is a violation [MQTT-3.3.4-7]. Incoming
    /// QoS 1 messages are acknowledged as they are handled, so they never accumulate.
    pub receive_maximum: u16,
}

/// What the client of the current connection said in its MQTT 5 CONNECT about what it can take.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ClientLimits {
    /// Unacknowledged QoS 1/2 PUBLISHes it accepts at once (Receive Maximum, §3.1.2.11.3).
    pub receive_maximum: u16,
    /// Largest packet it accepts (Maximum Packet Size, §3.1.2.11.4): a larger PUBLISH is
    /// discarded for it, never sent, and counted [MQTT-3.1.2-25].
    pub maximum_packet_size: u32,
}

impl Default for ClientLimits {
    /// What a client that says nothing (or speaks MQTT 3.x) gets: no limit beyond the protocol's.
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            maximum_packet_size: u32::MAX,
        }
    }
}

/// One subscription of a session, as the client made it.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Subscription {
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its MQTT 5 Subscription Identifier (1..=268,435,455), 0 for none: sent with every
    /// message it matches [MQTT-3.3.4-3].
    pub identifier: u32,
}

/// What a delivery carries besides its message, QoS and RETAIN flag. Rare (MQTT 5
/// Subscription Identifiers, shared subscriptions), so stored boxed and absent otherwise.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Via {
    /// Subscription Identifiers of the subscriptions that matched.
    pub identifiers: Vec<u32>,
    /// The shared subscription (`$share/<group>/<filter>`) it came through: if this session
    /// cannot take it after all, it goes back to the group ([`Session::take_shared`]).
    pub shared: Option<ByteStr>,
}

impl Via {
    /// What a delivery through one subscription carries; `None` when nothing.
    pub fn of(identifier: u32, shared: Option<ByteStr>) -> Option<Box<Via>> {
        (identifier != 0 || shared.is_some()).then(|| {
            Box::new(Via {
                identifiers: if identifier == 0 {
                    Vec::new()
                } else {
                    vec![identifier]
                },
                shared,
            })
        })
    }
}

/// A message a session gives back to its shared subscription's group (see
/// [`Session::take_shared`]).
#[derive(Debug)]
pub struct Returned {
    /// The message.
    pub message: Arc<Message>,
    /// `$share/<group>/<filter>`.
    pub shared: ByteStr,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            inflight: 32,
            max_queued: 1000,
            max_queued_online: 100_000,
            queue_qos0_offline: false,
            max_outbox_bytes: 1024 * 1024,
            max_queued_bytes: 64 * 1024 * 1024,
            receive_maximum: u16::MAX,
        }
    }
}

/// Encoded bytes waiting for the connection's writer, as a list of chunks so a shared payload
/// is written by reference (one vectored send) rather than copied.
#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Bytes>,
    scratch: BytesMut,
    len: usize,
}

/// Payloads up to this size are copied next to their header: a copy of a few hundred bytes is
/// cheaper than an extra iovec and reference count.
const INLINE_PAYLOAD: usize = 512;

impl Outbox {
    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a whole packet.
    pub fn push_packet(&mut self, packet: &Packet, protocol: Protocol) {
        let before = self.scratch.len();
        // Packets built by the broker are always encodable; a failure would be a broker bug,
        // and the packet is then skipped rather than sent malformed.
        if encode(packet, protocol, &mut self.scratch).is_err() {
            self.scratch.truncate(before);
            return;
        }
        self.len += self.scratch.len() - before;
        self.seal_if_large();
    }

    /// Appends a PUBLISH: its header is encoded here, its payload is shared unless small.
    pub fn push_publish(
        &mut self,
        header: &PublishHeader<'_>,
        payload: &Bytes,
        protocol: Protocol,
    ) {
        let before = self.scratch.len();
        if header.encode(protocol, &mut self.scratch).is_err() {
            self.scratch.truncate(before);
            return;
        }
        self.len += self.scratch.len() - before + payload.len();
        if payload.len() <= INLINE_PAYLOAD {
            self.scratch.extend_from_slice(payload);
            self.seal_if_large();
        } else {
            self.seal();
            self.chunks.push_back(payload.clone());
        }
    }

    /// Small packets accumulate contiguously in `scratch`, which makes acks and pings nearly
    /// free; past 16 KiB they are sealed into a chunk so the buffer does not regrow forever.
    fn seal_if_large(&mut self) {
        if self.scratch.len() >= 16 * 1024 {
            self.seal();
        }
    }

    /// Moves the bytes in `scratch` behind the queued chunks, keeping wire order.
    fn seal(&mut self) {
        if !self.scratch.is_empty() {
            self.chunks.push_back(self.scratch.split().freeze());
        }
    }

    /// Takes everything queued, in order, for one vectored write.
    pub fn take(&mut self, into: &mut Vec<Bytes>) {
        self.seal();
        into.extend(self.chunks.drain(..));
        self.len = 0;
        if self.scratch.capacity() > 64 * 1024 {
            // Release a buffer grown by a burst so an idle connection holds little memory.
            self.scratch = BytesMut::new();
        }
    }

    /// Puts back, in front of anything queued, chunks a write could not send.
    pub fn restore_front(&mut self, chunks: Vec<Bytes>) {
        for chunk in chunks.into_iter().rev() {
            self.len += chunk.len();
            self.chunks.push_front(chunk);
        }
    }

    /// Drops everything queued (the connection is gone).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.scratch = BytesMut::new();
        self.len = 0;
    }
}

/// State of an outgoing QoS 1/2 message: the packet it awaits.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[allow(clippy::enum_variant_names)] // named after the packets of the spec
enum Awaiting {
    PubAck,
    PubRec,
    PubComp,
}

#[derive(Clone, Debug)]
struct Inflight {
    id: PacketId,
    message: Arc<Message>,
    qos: QoS,
    retain: bool,
    awaiting: Awaiting,
    /// Not resent yet on this connection: a resumed session resends its unacknowledged messages
    /// only as far as the new connection's window allows (see [`Session::handle_resumed`]).
    held: bool,
    via: Option<Box<Via>>,
}

#[derive(Clone, Debug)]
struct Queued {
    message: Arc<Message>,
    qos: QoS,
    retain: bool,
    via: Option<Box<Via>>,
}

/// What the driver must do with an incoming PUBLISH after the session has seen it.
#[derive(Debug, Eq, PartialEq)]
pub enum PublishVerdict {
    /// Route it to subscribers.
    Route,
    /// A re-sent QoS 2 publish already routed: acknowledge only [MQTT-4.3.3-2].
    Duplicate,
}

/// A protocol violation by the client; the driver closes the connection with this code.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("protocol violation: {0:?}")]
pub struct Violation(pub ReasonCode);

/// Counters of what a session dropped, read by the driver into shard statistics.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Drops {
    /// QoS 0 messages dropped because the client could not keep up.
    pub slow_qos0: u64,
    /// Messages dropped because the session queue was full.
    pub queue_full: u64,
    /// Messages whose MQTT 5 Message Expiry Interval passed before they were sent.
    pub expired: u64,
    /// Messages discarded because the PUBLISH would exceed the client's Maximum Packet Size.
    pub too_large: u64,
}

impl Drops {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: Drops) {
        self.slow_qos0 += other.slow_qos0;
        self.queue_full += other.queue_full;
        self.expired += other.expired;
        self.too_large += other.too_large;
    }
}

/// Whether a connection is attached to the session.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Link {
    /// The connection's CONNACK is not sent yet: nothing may be sent before it [MQTT-3.2.0-1],
    /// so deliveries wait in the queue. A resumed session treats QoS 0 as it did offline;
    /// a fresh one (`fresh`) queues it too.
    Connecting { fresh: bool },
    /// Online: deliveries go out.
    Connected,
    /// A persistent session without a connection: QoS 1/2 (and QoS 0 if configured) are queued.
    Offline,
}

/// One client id's MQTT state. See the module doc.
#[derive(Debug)]
pub struct Session {
    client_id: ByteStr,
    /// The user name that created the session: only that user may resume it.
    owner: Option<ByteStr>,
    protocol: Protocol,
    limits: SessionLimits,
    /// Inflight window negotiated with the client (MQTT 5 receive maximum).
    window: u16,
    /// The client's MQTT 5 Maximum Packet Size (`u32::MAX` when it set none).
    max_packet_size: u32,
    subscriptions: HashMap<ByteStr, Subscription>,
    next_id: u16,
    inflight: VecDeque<Inflight>,
    queued: VecDeque<Queued>,
    /// Payload bytes in `queued`.
    queued_bytes: usize,
    incoming_qos2: HashSet<PacketId>,
    link: Link,
    drops: Drops,
    dropped_total: u64,
    outbox: Outbox,
    /// The time of the input being handled, told by the router ([`Session::handle_time`]).
    now: Option<Instant>,
}

impl Session {
    /// A new, connected session.
    pub fn new(client_id: ByteStr, protocol: Protocol, limits: SessionLimits) -> Self {
        Self {
            client_id,
            owner: None,
            protocol,
            limits,
            window: limits.inflight.max(1),
            max_packet_size: u32::MAX,
            subscriptions: HashMap::new(),
            next_id: 1,
            inflight: VecDeque::new(),
            queued: VecDeque::new(),
            queued_bytes: 0,
            incoming_qos2: HashSet::new(),
            link: Link::Connected,
            drops: Drops::default(),
            dropped_total: 0,
            outbox: Outbox::default(),
            now: None,
        }
    }

    /// A new session for a connection whose CONNACK is not sent yet (see
    /// [`Session::handle_connected`]), created by `owner`.
    pub fn connecting(
        client_id: ByteStr,
        owner: Option<ByteStr>,
        protocol: Protocol,
        limits: SessionLimits,
    ) -> Self {
        Self {
            owner,
            link: Link::Connecting { fresh: true },
            ..Self::new(client_id, protocol, limits)
        }
    }

    /// A new connection is taking this (resumed) session over: hold deliveries until its CONNACK.
    pub fn handle_connecting(&mut self) {
        self.link = Link::Connecting { fresh: false };
    }

    /// The time of the input about to be handled: message expiry is judged against it.
    pub fn handle_time(&mut self, now: Instant) {
        self.now = Some(now);
    }

    /// Whether `message` has expired at the session's time.
    fn expired(&self, message: &Message) -> bool {
        matches!((message.expires_at, self.now), (Some(at), Some(now)) if at <= now)
    }

    /// The Message Expiry Interval to send `message` with now, when it differs from the one it
    /// arrived with: the interval less the time it waited, in whole seconds rounded up
    /// [MQTT-3.3.2-6].
    fn remaining_expiry(&self, message: &Message) -> Option<u32> {
        let remaining = message.expires_at?.saturating_duration_since(self.now?);
        let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
        let seconds = u32::try_from(seconds).unwrap_or(u32::MAX);
        // A session's time may lag the publisher's by up to a timer tick: never more than sent.
        let original = message.properties.message_expiry_interval;
        let seconds = original.map_or(seconds, |original| original.min(seconds));
        (original != Some(seconds)).then_some(seconds)
    }

    /// Encodes a PUBLISH of `message` into the outbox, with the expiry interval that remains.
    /// The properties `message` goes out with, when they differ from those it arrived with:
    /// the expiry interval that remains, the Subscription Identifiers it matched.
    fn outgoing_properties(&self, message: &Message, via: Option<&Via>) -> Option<Properties> {
        let remaining = self.remaining_expiry(message);
        let identifiers = via.map_or(&[][..], |via| &via.identifiers[..]);
        if remaining.is_none() && identifiers.is_empty() {
            return None;
        }
        let mut properties = message.properties.clone();
        if remaining.is_some() {
            properties.message_expiry_interval = remaining;
        }
        properties.subscription_identifiers = identifiers.to_vec();
        Some(properties)
    }

    /// Encodes a PUBLISH of `message` into the outbox, with the properties it goes out with;
    /// false if it is too large for the client (counted).
    fn push_message(
        &mut self,
        message: &Message,
        qos: QoS,
        retain: bool,
        id: Option<PacketId>,
        via: Option<&Via>,
    ) -> bool {
        let properties = self.outgoing_properties(message, via);
        let header = PublishHeader {
            properties: properties.as_ref().unwrap_or(&message.properties),
            ..header(message, qos, retain, id)
        };
        if !fits(&header, self.protocol, self.max_packet_size) {
            self.drops.too_large += 1;
            return false;
        }
        self.outbox
            .push_publish(&header, &message.payload, self.protocol);
        true
    }

    /// Drops the queued messages that have expired; returns how many.
    fn drop_expired(&mut self) -> u64 {
        let before = self.queued.len();
        let now = self.now;
        self.queued.retain(|queued| {
            !matches!((queued.message.expires_at, now), (Some(at), Some(now)) if at <= now)
        });
        let dropped = (before - self.queued.len()) as u64;
        if dropped > 0 {
            self.queued_bytes = self.queued.iter().map(|q| q.message.payload.len()).sum();
            self.drops.expired += dropped;
        }
        dropped
    }

    /// The user name that created the session.
    pub fn owner(&self) -> Option<&ByteStr> {
        self.owner.as_ref()
    }

    /// The protocol level of the current (or last) connection.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Queues a packet the driver built (CONNACK, SUBACK, PINGRESP, DISCONNECT...).
    pub fn send(&mut self, packet: &Packet) {
        self.outbox.push_packet(packet, self.protocol);
    }

    /// Bytes waiting for the writer.
    pub fn pending_bytes(&self) -> usize {
        self.outbox.len()
    }

    /// Takes everything waiting for the writer, in wire order, for one vectored write.
    pub fn poll_transmit(&mut self, into: &mut Vec<Bytes>) {
        self.outbox.take(into);
    }

    /// Puts back, in front, what a write could not send.
    pub fn restore_transmit(&mut self, chunks: Vec<Bytes>) {
        self.outbox.restore_front(chunks);
    }

    /// The client id.
    pub fn client_id(&self) -> &ByteStr {
        &self.client_id
    }

    /// The subscriptions, filter → options.
    pub fn subscriptions(&self) -> &HashMap<ByteStr, Subscription> {
        &self.subscriptions
    }

    /// Outgoing messages awaiting acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// The packet id of the oldest unacknowledged outgoing message.
    pub fn oldest_inflight(&self) -> Option<PacketId> {
        self.inflight.front().map(|entry| entry.id)
    }

    /// Messages queued behind the window or while offline.
    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    /// Payload bytes of the queued messages.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Drop counters since the last call; resets them (the total goes on).
    pub fn take_drops(&mut self) -> Drops {
        let drops = std::mem::take(&mut self.drops);
        self.dropped_total += drops.slow_qos0 + drops.queue_full + drops.too_large;
        drops
    }

    /// Messages this session dropped for want of room (not those that expired) since it began (counted as [`Session::take_drops`] reads
    /// them), whichever connection and shard it was on.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Records a subscription; returns true if it replaced an existing one for the same filter.
    pub fn add_subscription(&mut self, filter: ByteStr, subscription: Subscription) -> bool {
        self.subscriptions.insert(filter, subscription).is_some()
    }

    /// Removes a subscription; returns whether it existed.
    pub fn remove_subscription(&mut self, filter: &str) -> bool {
        self.subscriptions.remove(filter).is_some()
    }

    /// The connection closed: what it had not sent is gone with it. A persistent session keeps
    /// its state for the next connection.
    pub fn handle_disconnected(&mut self) {
        self.link = Link::Offline;
        self.outbox.clear();
    }

    /// A new connection resumed this persistent session: adopt its protocol, window and packet
    /// size, resend the unacknowledged PUBLISHes (with DUP) and pending PUBRELs in their original
    /// order [MQTT-4.4.0-1] as far as the new window allows, holding the rest until
    /// acknowledgements make room (the client's Receive Maximum bounds them too, §4.9), then
    /// release queued messages into the window.
    pub fn handle_resumed(&mut self, protocol: Protocol, client: ClientLimits) {
        self.protocol = protocol;
        self.adopt(client);
        self.link = Link::Connected;
        for entry in &mut self.inflight {
            entry.held = true;
        }
        self.release_queued();
    }

    /// The CONNACK of a new session is queued: adopt the client's MQTT 5 receive maximum and
    /// maximum packet size and send what arrived while connecting.
    pub fn handle_connected(&mut self, client: ClientLimits) {
        self.adopt(client);
        self.link = Link::Connected;
        self.release_queued();
    }

    fn adopt(&mut self, client: ClientLimits) {
        self.window = self.limits.inflight.min(client.receive_maximum).max(1);
        self.max_packet_size = client.maximum_packet_size;
    }

    /// Resends held in-flight messages, oldest first, while fewer than the window are out. One
    /// too large for this connection is discarded as if delivered [MQTT-3.1.2-25].
    fn resend_held(&mut self) {
        let mut out = self.inflight.iter().filter(|entry| !entry.held).count();
        let mut index = 0;
        while index < self.inflight.len() && out < usize::from(self.window) {
            let entry = &self.inflight[index];
            if !entry.held {
                index += 1;
                continue;
            }
            match entry.awaiting {
                Awaiting::PubAck | Awaiting::PubRec => {
                    let properties = self.outgoing_properties(&entry.message, entry.via.as_deref());
                    let header = PublishHeader {
                        dup: true,
                        properties: properties.as_ref().unwrap_or(&entry.message.properties),
                        ..header(&entry.message, entry.qos, entry.retain, Some(entry.id))
                    };
                    if !fits(&header, self.protocol, self.max_packet_size) {
                        self.drops.too_large += 1;
                        self.inflight.remove(index);
                        continue;
                    }
                    self.outbox
                        .push_publish(&header, &entry.message.payload, self.protocol);
                }
                Awaiting::PubComp => {
                    self.outbox
                        .push_packet(&Packet::PubRel(PubRel::new(entry.id)), self.protocol);
                }
            }
            self.inflight[index].held = false;
            out += 1;
            index += 1;
        }
    }

    /// Keeps only what the resuming connection's access rules allow: subscriptions it may make
    /// and messages it may receive (a message whose PUBREL was already sent has been delivered
    /// and stays). Returns the filters removed.
    pub fn retain_allowed(
        &mut self,
        can_subscribe: impl Fn(&str) -> bool,
        can_receive: impl Fn(&str) -> bool,
    ) -> Vec<ByteStr> {
        let revoked: Vec<ByteStr> = self
            .subscriptions
            .keys()
            .filter(|filter| !can_subscribe(filter))
            .cloned()
            .collect();
        for filter in &revoked {
            self.subscriptions.remove(filter);
        }
        self.queued
            .retain(|queued| can_receive(&queued.message.topic));
        self.queued_bytes = self.queued.iter().map(|q| q.message.payload.len()).sum();
        self.inflight.retain(|entry| {
            entry.awaiting == Awaiting::PubComp || can_receive(&entry.message.topic)
        });
        revoked
    }

    /// A message routed to this session through a subscription granted at `granted` QoS.
    /// `retain` is the RETAIN flag to deliver with (true for retained messages sent on
    /// subscribe, or as published with retain-as-published).
    pub fn handle_delivery(&mut self, message: &Arc<Message>, granted: QoS, retain: bool) -> bool {
        self.handle_delivery_via(message, granted, retain, None)
    }

    /// [`Session::handle_delivery`] of a message that carries more ([`Via`]).
    pub fn handle_delivery_via(
        &mut self,
        message: &Arc<Message>,
        granted: QoS,
        retain: bool,
        via: Option<Box<Via>>,
    ) -> bool {
        if self.expired(message) {
            self.drops.expired += 1;
            return false;
        }
        let qos = message.qos.min(granted);
        if self.link != Link::Connected {
            let as_offline = !matches!(self.link, Link::Connecting { fresh: true });
            if as_offline && qos == QoS::AtMostOnce && !self.limits.queue_qos0_offline {
                return false;
            }
            return self.enqueue(Queued {
                message: Arc::clone(message),
                qos,
                retain,
                via,
            });
        }
        if qos == QoS::AtMostOnce {
            if self.outbox.len() >= self.limits.max_outbox_bytes {
                self.drops.slow_qos0 += 1;
                return false;
            }
            return self.push_message(message, qos, retain, None, via.as_deref());
        }
        if self.queued.is_empty() && self.window_open() {
            self.send_new(Arc::clone(message), qos, retain, via)
        } else {
            self.enqueue(Queued {
                message: Arc::clone(message),
                qos,
                retain,
                via,
            })
        }
    }

    /// Whether a connected session takes a message of `qos` now without dropping it: room in
    /// the outbox for QoS 0, room in the queue for QoS 1/2. A shared subscription's group
    /// passes a message on to another member rather than to one that cannot take it.
    pub fn has_room(&self, qos: QoS, payload_len: usize) -> bool {
        if self.link != Link::Connected {
            return false;
        }
        if qos == QoS::AtMostOnce {
            return self.outbox.len() < self.limits.max_outbox_bytes;
        }
        self.queued.len() < self.limits.max_queued_online
            && self.queued_bytes + payload_len <= self.limits.max_queued_bytes
    }

    /// Gives back the messages that came through shared subscriptions and that this session
    /// will not deliver, so their groups deliver them to another member [MQTT-4.8.2-6 and
    /// §4.8.2: a member's loss is not the group's]: everything queued, and what was sent but
    /// not acknowledged: at QoS 1 always (it may arrive twice, which QoS 1 allows); at QoS 2 only
    /// when the session ends (`ending`), as a persistent session resends it on resume and so
    /// delivers it once. A QoS 2 message whose PUBREC came has been received and stays.
    pub fn take_shared(&mut self, ending: bool) -> Vec<Returned> {
        let shared = |via: &Option<Box<Via>>| via.as_ref().and_then(|via| via.shared.clone());
        let mut returned = Vec::new();
        self.inflight.retain(|entry| {
            let gives_back = match entry.awaiting {
                Awaiting::PubAck => true,
                Awaiting::PubRec => ending,
                Awaiting::PubComp => false,
            };
            match shared(&entry.via).filter(|_| gives_back) {
                Some(shared) => {
                    returned.push(Returned {
                        message: Arc::clone(&entry.message),
                        shared,
                    });
                    false
                }
                None => true,
            }
        });
        let mut bytes = 0;
        self.queued.retain(|queued| match shared(&queued.via) {
            Some(shared) => {
                bytes += queued.message.payload.len();
                returned.push(Returned {
                    message: Arc::clone(&queued.message),
                    shared,
                });
                false
            }
            None => true,
        });
        self.queued_bytes -= bytes;
        returned
    }

    /// Room for a new QoS 1/2 message. Held resends count as in flight, so none is sent while
    /// a held one waits.
    fn window_open(&self) -> bool {
        self.inflight.len() < usize::from(self.window)
            && self.outbox.len() < self.limits.max_outbox_bytes
    }

    /// Queues a message; false if the queue is full (counted).
    fn enqueue(&mut self, queued: Queued) -> bool {
        let bound = if self.link == Link::Offline {
            self.limits.max_queued
        } else {
            self.limits.max_queued_online
        };
        let bytes = queued.message.payload.len();
        let full = |session: &Self| {
            session.queued.len() >= bound
                || session.queued_bytes + bytes > session.limits.max_queued_bytes
        };
        // Expired messages make room before a new one is refused.
        if full(self) && (self.drop_expired() == 0 || full(self)) {
            self.drops.queue_full += 1;
            return false;
        }
        self.queued_bytes += bytes;
        self.queued.push_back(queued);
        true
    }

    /// Sends a QoS 1/2 message into the window. One too large for the client is discarded
    /// before it takes a packet id: it is as if delivered, and nothing waits for its
    /// acknowledgement [MQTT-3.1.2-25].
    fn send_new(
        &mut self,
        message: Arc<Message>,
        qos: QoS,
        retain: bool,
        via: Option<Box<Via>>,
    ) -> bool {
        // Sized before an id is taken (every packet id is two bytes): a message too large for
        // the client is discarded as if delivered, and nothing waits for its acknowledgement.
        let properties = self.outgoing_properties(&message, via.as_deref());
        let probe = PublishHeader {
            properties: properties.as_ref().unwrap_or(&message.properties),
            ..header(&message, qos, retain, PacketId::new(1))
        };
        if !fits(&probe, self.protocol, self.max_packet_size) {
            self.drops.too_large += 1;
            return false;
        }
        let id = self.allocate_id();
        self.push_message(&message, qos, retain, Some(id), via.as_deref());
        let awaiting = if qos == QoS::AtLeastOnce {
            Awaiting::PubAck
        } else {
            Awaiting::PubRec
        };
        self.inflight.push_back(Inflight {
            id,
            message,
            qos,
            retain,
            awaiting,
            held: false,
            via,
        });
        true
    }

    /// Moves held resends, then queued messages, into the window while it has room.
    pub fn release_queued(&mut self) {
        if self.link != Link::Connected {
            return;
        }
        self.resend_held();
        while self.window_open() {
            let Some(next) = self.queued.pop_front() else {
                break;
            };
            self.queued_bytes -= next.message.payload.len();
            if self.expired(&next.message) {
                self.drops.expired += 1;
            } else if next.qos == QoS::AtMostOnce {
                self.push_message(
                    &next.message,
                    next.qos,
                    next.retain,
                    None,
                    next.via.as_deref(),
                );
            } else {
                self.send_new(next.message, next.qos, next.retain, next.via);
            }
        }
    }

    /// The next free packet id: ids cycle through 1..=65535 skipping those still inflight
    /// [MQTT-2.3.1-2]. The window is far below 65535, so a free id always exists.
    fn allocate_id(&mut self) -> PacketId {
        loop {
            let candidate = self.next_id;
            self.next_id = if candidate == u16::MAX {
                1
            } else {
                candidate + 1
            };
            if let Some(id) = PacketId::new(candidate) {
                if !self.inflight.iter().any(|entry| entry.id == id) {
                    return id;
                }
            }
        }
    }

    /// An incoming PUBLISH from the client. Writes the acknowledgement QoS requires and says
    /// whether to route it.
    pub fn handle_publish(&mut self, publish: &Publish) -> Result<PublishVerdict, Violation> {
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => Ok(PublishVerdict::Route),
            (QoS::AtLeastOnce, Some(id)) => {
                self.send(&Packet::PubAck(PubAck::new(id)));
                Ok(PublishVerdict::Route)
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let first = self.incoming_qos2.insert(id);
                // Only an MQTT 5 client was told the broker's Receive Maximum (in its CONNACK).
                let maximum = if self.protocol.is_v5() {
                    self.limits.receive_maximum
                } else {
                    u16::MAX
                };
                if first && self.incoming_qos2.len() > usize::from(maximum) {
                    self.incoming_qos2.remove(&id);
                    return Err(Violation(ReasonCode::ReceiveMaximumExceeded));
                }
                self.send(&Packet::PubRec(PubRec::new(id)));
                Ok(if first {
                    PublishVerdict::Route
                } else {
                    PublishVerdict::Duplicate
                })
            }
            // The decoder guarantees a packet id for QoS 1/2 [MQTT-2.3.1-5].
            (_, None) => Err(Violation(ReasonCode::ProtocolError)),
        }
    }

    /// Acknowledges a refused QoS 1/2 PUBLISH as if it were accepted (MQTT 3.1.1 has no way to
    /// say no, so the message is acknowledged and dropped) without routing it.
    pub fn acknowledge_refused(&mut self, publish: &Publish, code: ReasonCode) {
        let code = if self.protocol.is_v5() {
            code
        } else {
            ReasonCode::Success
        };
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                let mut ack = PubAck::new(id);
                ack.code = code;
                self.send(&Packet::PubAck(ack));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let mut rec = PubRec::new(id);
                rec.code = code;
                if !code.is_error() {
                    self.incoming_qos2.insert(id);
                }
                self.send(&Packet::PubRec(rec));
            }
            _ => {}
        }
    }

    /// PUBREL from the client: the QoS 2 flow of an incoming message completes [MQTT-4.3.3-2].
    pub fn handle_pubrel(&mut self, id: PacketId) {
        let mut comp = PubComp::new(id);
        if !self.incoming_qos2.remove(&id) && self.protocol.is_v5() {
            comp.code = ReasonCode::PacketIdentifierNotFound;
        }
        self.send(&Packet::PubComp(comp));
    }

    /// PUBACK from the client.
    pub fn handle_puback(&mut self, id: PacketId) {
        if self.complete(id, Awaiting::PubAck) {
            self.release_queued();
        }
    }

    /// PUBREC from the client: answer PUBREL and wait for PUBCOMP. A PUBREC carrying an error
    /// code (MQTT 5) ends the flow.
    pub fn handle_pubrec(&mut self, rec: &PubRec) {
        let Some(entry) = self.inflight.iter_mut().find(|e| e.id == rec.packet_id) else {
            if self.protocol.is_v5() {
                let mut rel = PubRel::new(rec.packet_id);
                rel.code = ReasonCode::PacketIdentifierNotFound;
                self.send(&Packet::PubRel(rel));
            }
            return;
        };
        if rec.code.is_error() {
            self.complete(rec.packet_id, Awaiting::PubRec);
            self.release_queued();
            return;
        }
        entry.awaiting = Awaiting::PubComp;
        // A PUBREC for a message still held from the previous connection: the client had it,
        // and the PUBREL now sent makes it out again.
        entry.held = false;
        self.send(&Packet::PubRel(PubRel::new(rec.packet_id)));
    }

    /// PUBCOMP from the client.
    pub fn handle_pubcomp(&mut self, id: PacketId) {
        if self.complete(id, Awaiting::PubComp) {
            self.release_queued();
        }
    }

    fn complete(&mut self, id: PacketId, awaiting: Awaiting) -> bool {
        match self
            .inflight
            .iter()
            .position(|e| e.id == id && e.awaiting == awaiting)
        {
            Some(index) => {
                self.inflight.remove(index);
                true
            }
            None => false,
        }
    }

    /// Takes the whole transferable state, for a takeover that moves the session to another
    /// connection (possibly on another shard). The session is left empty.
    pub fn take_state(&mut self) -> Session {
        let mut taken = Session::new(self.client_id.clone(), self.protocol, self.limits);
        std::mem::swap(&mut taken.subscriptions, &mut self.subscriptions);
        std::mem::swap(&mut taken.inflight, &mut self.inflight);
        std::mem::swap(&mut taken.queued, &mut self.queued);
        std::mem::swap(&mut taken.queued_bytes, &mut self.queued_bytes);
        taken.dropped_total = self.dropped_total;
        std::mem::swap(&mut taken.incoming_qos2, &mut self.incoming_qos2);
        taken.next_id = self.next_id;
        taken.owner.clone_from(&self.owner);
        taken.link = Link::Offline;
        taken
    }
}

/// Whether a PUBLISH fits the client's Maximum Packet Size.
fn fits(header: &PublishHeader<'_>, protocol: Protocol, max_packet_size: u32) -> bool {
    max_packet_size == u32::MAX
        || header
            .packet_len(protocol)
            .is_ok_and(|len| len <= max_packet_size as usize)
}

/// The header of the PUBLISH a subscriber receives, borrowed from the shared message.
fn header(message: &Message, qos: QoS, retain: bool, id: Option<PacketId>) -> PublishHeader<'_> {
    PublishHeader {
        dup: false,
        qos,
        retain,
        topic: &message.topic,
        packet_id: id,
        properties: &message.properties,
        payload_len: message.payload.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardmq_codec::Decoder;

    fn message(topic: &str, qos: QoS) -> Arc<Message> {
        Arc::new(Message {
            topic: ByteStr::from(topic),
            payload: Bytes::from_static(b"hello"),
            qos,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
        })
    }

    fn drain(session: &mut Session) -> Vec<Packet> {
        drain_as(session, Protocol::V311)
    }

    fn drain_v5(session: &mut Session) -> Vec<Packet> {
        drain_as(session, Protocol::V500)
    }

    /// Everything the session has to send, decoded as a client of `protocol` would.
    fn drain_as(session: &mut Session, protocol: Protocol) -> Vec<Packet> {
        let mut chunks = Vec::new();
        session.poll_transmit(&mut chunks);
        let mut buf = BytesMut::new();
        for chunk in chunks {
            buf.extend_from_slice(&chunk);
        }
        let mut decoder = Decoder::with_protocol(1 << 20, protocol);
        let mut packets = Vec::new();
        while let Some(packet) = decoder.decode(&mut buf).expect("valid output") {
            packets.push(packet);
        }
        assert!(buf.is_empty());
        packets
    }

    fn session(limits: SessionLimits) -> Session {
        Session::new(ByteStr::from("c"), Protocol::V311, limits)
    }

    fn id(n: u16) -> PacketId {
        PacketId::new(n).expect("non-zero")
    }

    #[test]
    fn qos0_delivery_is_written_once() {
        let mut s = session(SessionLimits::default());
        s.handle_delivery(&message("a", QoS::AtMostOnce), QoS::ExactlyOnce, false);
        let packets = drain(&mut s);
        assert_eq!(packets.len(), 1);
        let Packet::Publish(p) = &packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!(
            (p.qos, p.packet_id, p.topic.as_str()),
            (QoS::AtMostOnce, None, "a")
        );
        assert_eq!(s.inflight_len(), 0);
    }

    #[test]
    fn qos_is_downgraded_to_granted() {
        let mut s = session(SessionLimits::default());
        s.handle_delivery(&message("a", QoS::ExactlyOnce), QoS::AtLeastOnce, false);
        let packets = drain(&mut s);
        let Packet::Publish(p) = &packets[0] else {
            panic!()
        };
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert_eq!(p.packet_id, Some(id(1)));
    }

    #[test]
    fn inflight_window_queues_the_rest_and_acks_release_them() {
        let limits = SessionLimits {
            inflight: 2,
            ..SessionLimits::default()
        };
        let mut s = session(limits);
        for _ in 0..5 {
            s.handle_delivery(&message("a", QoS::AtLeastOnce), QoS::AtLeastOnce, false);
        }
        assert_eq!(drain(&mut s).len(), 2);
        assert_eq!((s.inflight_len(), s.queued_len()), (2, 3));
        s.handle_puback(id(1));
        let packets = drain(&mut s);
        assert_eq!(packets.len(), 1);
        let Packet::Publish(p) = &packets[0] else {
            panic!()
        };
        assert_eq!(p.packet_id, Some(id(3)));
        // An ack for an unknown id changes nothing.
        s.handle_puback(id(9));
        assert!(drain(&mut s).is_empty());
        assert_eq!((s.inflight_len(), s.queued_len()), (2, 2));
    }

    #[test]
    fn qos2_outgoing_flow() {
        let mut s = session(SessionLimits::default());
        s.handle_delivery(&message("a", QoS::ExactlyOnce), QoS::ExactlyOnce, false);
        drain(&mut s);
        s.handle_pubrec(&PubRec::new(id(1)));
        assert_eq!(drain(&mut s), vec![Packet::PubRel(PubRel::new(id(1)))]);
        // PUBACK does not complete a QoS 2 flow.
        s.handle_puback(id(1));
        assert_eq!(s.inflight_len(), 1);
        s.handle_pubcomp(id(1));
        assert_eq!(s.inflight_len(), 0);
    }

    #[test]
    fn incoming_qos2_is_routed_once() {
        let mut s = session(SessionLimits::default());
        let publish = Publish {
            qos: QoS::ExactlyOnce,
            packet_id: Some(id(7)),
            topic: ByteStr::from("t"),
            ..Publish::default()
        };
        assert_eq!(s.handle_publish(&publish), Ok(PublishVerdict::Route));
        assert_eq!(s.handle_publish(&publish), Ok(PublishVerdict::Duplicate));
        s.handle_pubrel(id(7));
        assert_eq!(s.handle_publish(&publish), Ok(PublishVerdict::Route));
        let packets = drain(&mut s);
        assert_eq!(
            packets,
            vec![
                Packet::PubRec(PubRec::new(id(7))),
                Packet::PubRec(PubRec::new(id(7))),
                Packet::PubComp(PubComp::new(id(7))),
                Packet::PubRec(PubRec::new(id(7))),
            ]
        );
    }

    #[test]
    fn offline_session_queues_and_resends_on_resume() {
        let mut s = session(SessionLimits::default());
        s.handle_delivery(&message("a", QoS::AtLeastOnce), QoS::AtLeastOnce, false);
        s.handle_delivery(&message("b", QoS::ExactlyOnce), QoS::ExactlyOnce, false);
        s.handle_pubrec(&PubRec::new(id(2)));
        drain(&mut s);
        s.handle_disconnected();
        s.handle_delivery(&message("c", QoS::AtLeastOnce), QoS::AtLeastOnce, false);
        s.handle_delivery(&message("d", QoS::AtMostOnce), QoS::AtLeastOnce, false);
        assert_eq!(s.pending_bytes(), 0);
        assert_eq!(s.queued_len(), 1, "QoS 0 is not queued offline by default");
        let mut moved = s.take_state();
        moved.handle_resumed(Protocol::V311, ClientLimits::default());
        let packets = drain(&mut moved);
        assert_eq!(packets.len(), 3);
        let Packet::Publish(first) = &packets[0] else {
            panic!()
        };
        assert!(first.dup);
        assert_eq!((first.topic.as_str(), first.packet_id), ("a", Some(id(1))));
        assert_eq!(packets[1], Packet::PubRel(PubRel::new(id(2))));
        let Packet::Publish(third) = &packets[2] else {
            panic!()
        };
        assert!(!third.dup);
        assert_eq!(third.topic.as_str(), "c");
        assert_eq!(third.packet_id, Some(id(3)));
    }

    fn shared(key: &str) -> Option<Box<Via>> {
        Via::of(0, Some(ByteStr::from(key)))
    }

    #[test]
    fn shared_deliveries_not_completed_go_back_to_the_group() {
        let limits = SessionLimits {
            inflight: 3,
            ..SessionLimits::default()
        };
        let mut s = Session::new(ByteStr::from("c"), Protocol::V500, limits);
        let via = || shared("$share/g/t");
        s.handle_delivery_via(
            &message("q1-acked", QoS::AtLeastOnce),
            QoS::AtLeastOnce,
            false,
            via(),
        );
        s.handle_delivery_via(
            &message("q2-received", QoS::ExactlyOnce),
            QoS::ExactlyOnce,
            false,
            via(),
        );
        s.handle_delivery_via(
            &message("q2-sent", QoS::ExactlyOnce),
            QoS::ExactlyOnce,
            false,
            via(),
        );
        s.handle_delivery_via(
            &message("q1-queued", QoS::AtLeastOnce),
            QoS::AtLeastOnce,
            false,
            via(),
        );
        s.handle_delivery(&message("plain", QoS::AtLeastOnce), QoS::AtLeastOnce, false);
        s.handle_puback(id(1));
        s.handle_pubrec(&PubRec::new(id(2)));
        drain_v5(&mut s);
        // q1-queued went out when q1-acked was acknowledged; plain waits behind the window.
        assert_eq!((s.inflight_len(), s.queued_len()), (3, 1));
        let topics = |returned: Vec<Returned>| -> Vec<String> {
            returned
                .iter()
                .map(|r| r.message.topic.to_string())
                .collect()
        };
        // A persistent session keeps the QoS 2 message it sent (it is resent on resume and so
        // delivered once) and gives back the QoS 1 one.
        let mut persistent = s.take_state();
        assert_eq!(topics(persistent.take_shared(false)), ["q1-queued"]);
        // An ending session gives back its sent QoS 2 message too, never one whose PUBREC came.
        assert_eq!(topics(persistent.take_shared(true)), ["q2-sent"]);
        assert_eq!(
            persistent.inflight_len(),
            1,
            "q2-received stays until PUBCOMP"
        );
        assert_eq!(persistent.queued_len(), 1, "plain is not a shared delivery");
        assert_eq!(persistent.queued_bytes(), 5);
    }

    #[test]
    fn subscription_identifiers_go_out_with_the_message_and_its_resend() {
        let mut s = Session::new(ByteStr::from("c"), Protocol::V500, SessionLimits::default());
        let via = Some(Box::new(Via {
            identifiers: vec![7, 268_435_455],
            shared: None,
        }));
        s.handle_delivery_via(
            &message("t", QoS::AtLeastOnce),
            QoS::AtLeastOnce,
            false,
            via,
        );
        let sent = drain_v5(&mut s);
        let Packet::Publish(publish) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!(
            publish.properties.subscription_identifiers,
            [7, 268_435_455]
        );
        s.handle_disconnected();
        s.handle_resumed(Protocol::V500, ClientLimits::default());
        let resent = drain_v5(&mut s);
        let Packet::Publish(again) = &resent[0] else {
            panic!("{resent:?}")
        };
        assert!(again.dup);
        assert_eq!(again.properties.subscription_identifiers, [7, 268_435_455]);
        // Nothing of it reaches an MQTT 3.1.1 client, whose PUBLISH has no properties.
        let mut v3 = session(SessionLimits::default());
        v3.handle_delivery_via(
            &message("t", QoS::AtMostOnce),
            QoS::AtMostOnce,
            false,
            Via::of(9, None),
        );
        assert!(matches!(&drain(&mut v3)[0], Packet::Publish(p) if p.topic == "t"));
    }

    #[test]
    fn bounded_queue_counts_drops() {
        let limits = SessionLimits {
            inflight: 1,
            max_queued: 2,
            max_queued_online: 3,
            ..SessionLimits::default()
        };
        let mut s = session(limits);
        let qos1 = message("a", QoS::AtLeastOnce);
        for _ in 0..6 {
            s.handle_delivery(&qos1, QoS::AtLeastOnce, false);
        }
        assert_eq!((s.inflight_len(), s.queued_len()), (1, 3), "online bound");
        assert_eq!(s.take_drops().queue_full, 2);
        s.handle_disconnected();
        s.handle_delivery(&qos1, QoS::AtLeastOnce, false);
        assert_eq!(
            s.queued_len(),
            3,
            "offline bound (2) already exceeded: dropped"
        );
        assert_eq!(s.take_drops().queue_full, 1);
    }

    #[test]
    fn slow_consumer_drops_qos0_and_holds_qos1() {
        let limits = SessionLimits {
            max_outbox_bytes: 64,
            ..SessionLimits::default()
        };
        let mut s = session(limits);
        for _ in 0..20 {
            s.handle_delivery(&message("a", QoS::AtMostOnce), QoS::AtMostOnce, false);
        }
        assert!(s.take_drops().slow_qos0 > 0);
        s.handle_delivery(&message("a", QoS::AtLeastOnce), QoS::AtLeastOnce, false);
        assert_eq!(s.queued_len(), 1);
        drain(&mut s);
        s.release_queued();
        assert_eq!(s.inflight_len(), 1);
    }

    #[test]
    fn large_payloads_keep_wire_order() {
        let mut s = session(SessionLimits::default());
        for (n, len) in [10usize, 4096, 20, 600, 5].into_iter().enumerate() {
            let message = Arc::new(Message {
                topic: ByteStr::from(format!("t{n}").as_str()),
                payload: Bytes::from(vec![n as u8; len]),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties::default(),
                expires_at: None,
            });
            s.handle_delivery(&message, QoS::AtMostOnce, false);
            s.send(&Packet::PingResp);
        }
        let packets = drain(&mut s);
        assert_eq!(packets.len(), 10);
        for (n, pair) in packets.chunks(2).enumerate() {
            let Packet::Publish(p) = &pair[0] else {
                panic!("{pair:?}")
            };
            assert_eq!(p.topic.as_str(), format!("t{n}"));
            assert!(p.payload.iter().all(|b| *b == n as u8));
            assert_eq!(pair[1], Packet::PingResp);
        }
    }

    #[test]
    fn packet_ids_skip_those_inflight_and_wrap() {
        let mut s = session(SessionLimits {
            inflight: 3,
            ..SessionLimits::default()
        });
        s.next_id = u16::MAX;
        for _ in 0..3 {
            s.handle_delivery(&message("a", QoS::AtLeastOnce), QoS::AtLeastOnce, false);
        }
        let ids: Vec<_> = s.inflight.iter().map(|e| e.id.get()).collect();
        assert_eq!(ids, vec![u16::MAX, 1, 2]);
    }

    fn expiring(topic: &str, interval: u32, at: Instant) -> Arc<Message> {
        let mut properties = Properties::default();
        properties.message_expiry_interval = Some(interval);
        Arc::new(Message {
            topic: ByteStr::from(topic),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties,
            expires_at: Some(at + std::time::Duration::from_secs(interval.into())),
        })
    }

    #[test]
    fn offline_messages_expire_and_the_rest_carry_the_remaining_interval() {
        let t0 = Instant::now();
        let mut s = Session::new(ByteStr::from("c"), Protocol::V500, SessionLimits::default());
        s.handle_time(t0);
        s.handle_disconnected();
        assert!(s.handle_delivery(&expiring("short", 1, t0), QoS::AtLeastOnce, false));
        assert!(s.handle_delivery(&expiring("long", 10, t0), QoS::AtLeastOnce, false));
        s.handle_time(t0 + std::time::Duration::from_millis(3500));
        s.handle_resumed(Protocol::V500, ClientLimits::default());
        let packets = drain_v5(&mut s);
        assert_eq!(packets.len(), 1, "{packets:?}");
        let Packet::Publish(p) = &packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!(p.topic.as_str(), "long");
        // 6.5 s remain, rounded up [MQTT-3.3.2-6].
        assert_eq!(p.properties.message_expiry_interval, Some(7));
        let drops = s.take_drops();
        assert_eq!((drops.expired, drops.queue_full), (1, 0));
        assert_eq!(
            s.dropped_total(),
            0,
            "expiry is not a drop for want of room"
        );
    }

    #[test]
    fn messages_behind_the_window_expire_before_they_are_sent() {
        let t0 = Instant::now();
        let limits = SessionLimits {
            inflight: 1,
            ..SessionLimits::default()
        };
        let mut s = Session::new(ByteStr::from("c"), Protocol::V500, limits);
        s.handle_time(t0);
        s.handle_delivery(&expiring("first", 60, t0), QoS::AtLeastOnce, false);
        s.handle_delivery(&expiring("second", 1, t0), QoS::AtLeastOnce, false);
        assert_eq!(drain_v5(&mut s).len(), 1);
        assert_eq!(s.queued_len(), 1);
        s.handle_time(t0 + std::time::Duration::from_secs(2));
        s.handle_puback(id(1));
        assert!(drain_v5(&mut s).is_empty(), "the queued message expired");
        assert_eq!(s.take_drops().expired, 1);
        // A message arriving already expired (it waited between shards) is not sent either.
        s.handle_delivery(&expiring("late", 1, t0), QoS::AtMostOnce, false);
        assert!(drain_v5(&mut s).is_empty());
        assert_eq!(s.take_drops().expired, 1);
    }

    #[test]
    fn expired_messages_make_room_in_a_full_queue() {
        let t0 = Instant::now();
        let limits = SessionLimits {
            max_queued: 1,
            ..SessionLimits::default()
        };
        let mut s = Session::new(ByteStr::from("c"), Protocol::V500, limits);
        s.handle_time(t0);
        s.handle_disconnected();
        assert!(s.handle_delivery(&expiring("a", 1, t0), QoS::AtLeastOnce, false));
        assert!(!s.handle_delivery(&expiring("b", 1, t0), QoS::AtLeastOnce, false));
        s.handle_time(t0 + std::time::Duration::from_secs(1));
        assert!(s.handle_delivery(
            &expiring("c", 1, t0 + std::time::Duration::from_secs(1)),
            QoS::AtLeastOnce,
            false
        ));
        let drops = s.take_drops();
        assert_eq!((drops.expired, drops.queue_full), (1, 1));
        assert_eq!(s.queued_len(), 1);
    }

    #[test]
    fn a_lagging_session_time_never_raises_the_interval() {
        let t0 = Instant::now();
        let mut s = Session::new(ByteStr::from("c"), Protocol::V500, SessionLimits::default());
        s.handle_time(t0 - std::time::Duration::from_millis(200));
        s.handle_delivery(&expiring("t", 30, t0), QoS::AtLeastOnce, false);
        let Packet::Publish(p) = &drain_v5(&mut s)[0] else {
            panic!()
        };
        assert_eq!(p.properties.message_expiry_interval, Some(30));
    }

    #[test]
    fn resume_resends_only_as_far_as_the_new_window() {
        let mut s = session(SessionLimits::default());
        for topic in ["a", "b", "c", "d", "e"] {
            s.handle_delivery(&message(topic, QoS::AtLeastOnce), QoS::AtLeastOnce, false);
        }
        s.handle_delivery(&message("f", QoS::ExactlyOnce), QoS::ExactlyOnce, false);
        s.handle_pubrec(&PubRec::new(id(6)));
        drain(&mut s);
        s.handle_disconnected();
        s.handle_delivery(&message("g", QoS::AtLeastOnce), QoS::AtLeastOnce, false);
        let mut moved = s.take_state();
        moved.handle_resumed(
            Protocol::V311,
            ClientLimits {
                receive_maximum: 2,
                ..ClientLimits::default()
            },
        );
        let topics = |packets: Vec<Packet>| -> Vec<(String, bool)> {
            packets
                .into_iter()
                .map(|packet| match packet {
                    Packet::Publish(p) => (p.topic.to_string(), p.dup),
                    Packet::PubRel(rel) => (format!("rel{}", rel.packet_id.get()), false),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let dup = |topic: &str| (topic.to_string(), true);
        assert_eq!(topics(drain(&mut moved)), vec![dup("a"), dup("b")]);
        assert_eq!((moved.inflight_len(), moved.queued_len()), (6, 1));
        moved.handle_puback(id(2));
        assert_eq!(topics(drain(&mut moved)), vec![dup("c")]);
        // A PUBREC for a held message is answered, and the PUBREL counts as out.
        moved.handle_pubrec(&PubRec::new(id(5)));
        assert_eq!(topics(drain(&mut moved)), vec![("rel5".into(), false)]);
        moved.handle_puback(id(1));
        moved.handle_puback(id(3));
        assert_eq!(topics(drain(&mut moved)), vec![dup("d")]);
        moved.handle_puback(id(4));
        assert_eq!(topics(drain(&mut moved)), vec![("rel6".into(), false)]);
        // Nothing new goes out while a resend is held; then the queue moves.
        moved.handle_pubcomp(id(5));
        assert_eq!(topics(drain(&mut moved)), vec![("g".into(), false)]);
        moved.handle_pubcomp(id(6));
        assert_eq!((moved.inflight_len(), moved.queued_len()), (1, 0));
    }

    fn sized(topic: &str, qos: QoS, len: usize) -> Arc<Message> {
        Arc::new(Message {
            topic: ByteStr::from(topic),
            payload: Bytes::from(vec![7u8; len]),
            qos,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
        })
    }

    #[test]
    fn a_message_too_large_for_the_client_is_discarded_and_counted() {
        let mut s = Session::connecting(
            ByteStr::from("c"),
            None,
            Protocol::V311,
            SessionLimits {
                inflight: 1,
                ..SessionLimits::default()
            },
        );
        s.handle_connected(ClientLimits {
            maximum_packet_size: 100,
            ..ClientLimits::default()
        });
        // topic "t" (3) + payload: 2 + 3 + 95 = 100 bytes fit; one byte more does not.
        assert!(s.handle_delivery(&sized("t", QoS::AtMostOnce, 95), QoS::AtMostOnce, false));
        assert!(!s.handle_delivery(&sized("t", QoS::AtMostOnce, 96), QoS::AtMostOnce, false));
        // QoS 1 adds a packet id: 93 bytes of payload fit.
        assert!(!s.handle_delivery(&sized("t", QoS::AtLeastOnce, 94), QoS::AtLeastOnce, false));
        assert_eq!(
            s.inflight_len(),
            0,
            "a discarded message holds no window slot"
        );
        assert!(s.handle_delivery(&sized("t", QoS::AtLeastOnce, 93), QoS::AtLeastOnce, false));
        // Queued behind the window, then found too large when the window opens.
        s.handle_delivery(
            &sized("big", QoS::AtLeastOnce, 200),
            QoS::AtLeastOnce,
            false,
        );
        s.handle_delivery(&sized("t", QoS::AtLeastOnce, 10), QoS::AtLeastOnce, false);
        assert_eq!(s.queued_len(), 2);
        let sizes: Vec<usize> = drain(&mut s)
            .into_iter()
            .map(|packet| match packet {
                Packet::Publish(p) => p.payload.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![95, 93]);
        // The discarded message took no packet id.
        s.handle_puback(id(1));
        let packets = drain(&mut s);
        assert_eq!(packets.len(), 1);
        let Packet::Publish(p) = &packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!((p.topic.as_str(), p.payload.len()), ("t", 10));
        assert_eq!(s.take_drops().too_large, 3);
        assert_eq!(s.dropped_total(), 3);
    }

    #[test]
    fn an_mqtt5_client_beyond_the_receive_maximum_is_a_violation() {
        let limits = SessionLimits {
            receive_maximum: 2,
            ..SessionLimits::default()
        };
        let qos2 = |n: u16| Publish {
            qos: QoS::ExactlyOnce,
            packet_id: Some(id(n)),
            topic: ByteStr::from("t"),
            ..Publish::default()
        };
        let mut v5 = Session::new(ByteStr::from("c"), Protocol::V500, limits);
        assert_eq!(v5.handle_publish(&qos2(1)), Ok(PublishVerdict::Route));
        assert_eq!(v5.handle_publish(&qos2(2)), Ok(PublishVerdict::Route));
        // A resent duplicate is not a new flow.
        assert_eq!(v5.handle_publish(&qos2(2)), Ok(PublishVerdict::Duplicate));
        assert_eq!(
            v5.handle_publish(&qos2(3)),
            Err(Violation(ReasonCode::ReceiveMaximumExceeded))
        );
        // Once a flow completes there is room again.
        v5.handle_pubrel(id(1));
        assert_eq!(v5.handle_publish(&qos2(3)), Ok(PublishVerdict::Route));
        // QoS 1 is acknowledged at once and never counts.
        let qos1 = Publish {
            qos: QoS::AtLeastOnce,
            ..qos2(9)
        };
        assert_eq!(v5.handle_publish(&qos1), Ok(PublishVerdict::Route));
        // An MQTT 3.1.1 client was never told the broker's receive maximum.
        let mut v3 = Session::new(ByteStr::from("c"), Protocol::V311, limits);
        for n in 1..=3 {
            assert_eq!(v3.handle_publish(&qos2(n)), Ok(PublishVerdict::Route));
        }
    }

    mod model {
        //! `Session` under random sequences of deliveries, client packets, acknowledgements,
        //! disconnections and resumptions, checked against what a client would observe.

        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        #[derive(Clone, Debug)]
        enum Op {
            Deliver { qos: u8, granted: u8 },
            AckOldest,
            AckBogus(u16),
            ClientPublish { qos: u8, id: u16 },
            ClientPubRel(u16),
            Disconnect,
            Resume { receive_maximum: u16 },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0..3u8, 0..3u8).prop_map(|(qos, granted)| Op::Deliver { qos, granted }),
                5 => Just(Op::AckOldest),
                1 => (1..8u16).prop_map(Op::AckBogus),
                2 => (0..3u8, 1..6u16).prop_map(|(qos, id)| Op::ClientPublish { qos, id }),
                1 => (1..6u16).prop_map(Op::ClientPubRel),
                1 => Just(Op::Disconnect),
                1 => (1..6u16).prop_map(|receive_maximum| Op::Resume { receive_maximum }),
            ]
        }

        /// What the client side knows: the acknowledgements it owes, in the order it learnt them.
        #[derive(Default)]
        struct Client {
            owed: BTreeMap<u64, (PacketId, Awaiting)>,
            order: u64,
            /// Payload numbers of QoS 1/2 messages received at least once.
            received: Vec<u64>,
            /// Payload numbers of first transmissions (no DUP), in arrival order.
            first_sent: Vec<u64>,
        }

        impl Client {
            fn read(&mut self, session: &mut Session) {
                for packet in drain(session) {
                    match packet {
                        Packet::Publish(p) if p.qos != QoS::AtMostOnce => {
                            let id = p.packet_id.expect("QoS 1/2 has an id");
                            assert!(
                                !self.owed.values().any(|(owed, _)| *owed == id),
                                "packet id {id:?} reused while in flight"
                            );
                            let n = u64::from_be_bytes(p.payload[..].try_into().unwrap());
                            if !p.dup {
                                self.first_sent.push(n);
                            }
                            self.received.push(n);
                            let awaiting = if p.qos == QoS::AtLeastOnce {
                                Awaiting::PubAck
                            } else {
                                Awaiting::PubRec
                            };
                            self.order += 1;
                            self.owed.insert(self.order, (id, awaiting));
                        }
                        Packet::PubRel(rel) => {
                            self.owed.retain(|_, (id, _)| *id != rel.packet_id);
                            self.order += 1;
                            self.owed
                                .insert(self.order, (rel.packet_id, Awaiting::PubComp));
                        }
                        _ => {}
                    }
                }
            }

            fn ack_oldest(&mut self, session: &mut Session) {
                let Some((&key, &(id, awaiting))) = self.owed.iter().next() else {
                    return;
                };
                self.owed.remove(&key);
                match awaiting {
                    Awaiting::PubAck => session.handle_puback(id),
                    Awaiting::PubRec => session.handle_pubrec(&PubRec::new(id)),
                    Awaiting::PubComp => session.handle_pubcomp(id),
                }
            }
        }

        proptest! {
            #[test]
            fn session_keeps_every_accepted_message(ops in proptest::collection::vec(op(), 1..200)) {
                let limits = SessionLimits {
                    inflight: 4,
                    max_queued: 5,
                    max_queued_online: 8,
                    ..SessionLimits::default()
                };
                let mut session = Session::new(ByteStr::from("c"), Protocol::V311, limits);
                let mut client = Client::default();
                let mut window = usize::from(limits.inflight);
                let mut connected = true;
                let mut accepted = Vec::new();
                let mut next = 0u64;
                for op in ops {
                    let first_sent = client.first_sent.len();
                    match op {
                        Op::Deliver { qos, granted } => {
                            next += 1;
                            let message = Arc::new(Message {
                                topic: ByteStr::from("t"),
                                payload: Bytes::from(next.to_be_bytes().to_vec()),
                                qos: QoS::from_u8(qos).unwrap(),
                                retain: false,
                                properties: Properties::default(),
                                expires_at: None,
                            });
                            let before = session.take_drops();
                            prop_assert_eq!(before, Drops::default());
                            session.handle_delivery(&message, QoS::from_u8(granted).unwrap(), false);
                            let dropped = session.take_drops().queue_full > 0;
                            if qos.min(granted) > 0 && !dropped {
                                accepted.push(next);
                            }
                        }
                        Op::AckOldest => {
                            if connected {
                                client.ack_oldest(&mut session);
                            }
                        }
                        Op::AckBogus(id) => {
                            if connected {
                                let id = PacketId::new(id).unwrap();
                                session.handle_puback(id);
                                session.handle_pubcomp(id);
                            }
                        }
                        Op::ClientPublish { qos, id } => {
                            if connected {
                                let qos = QoS::from_u8(qos).unwrap();
                                let publish = Publish {
                                    qos,
                                    topic: ByteStr::from("in"),
                                    packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap()),
                                    ..Publish::default()
                                };
                                prop_assert!(session.handle_publish(&publish).is_ok());
                            }
                        }
                        Op::ClientPubRel(id) => {
                            if connected {
                                session.handle_pubrel(PacketId::new(id).unwrap());
                            }
                        }
                        Op::Disconnect => {
                            if connected {
                                session.handle_disconnected();
                                client.owed.clear();
                                connected = false;
                            }
                        }
                        Op::Resume { receive_maximum } => {
                            if !connected {
                                session = session.take_state();
                                session.handle_resumed(
                                    Protocol::V311,
                                    ClientLimits {
                                        receive_maximum,
                                        ..ClientLimits::default()
                                    },
                                );
                                window = usize::from(limits.inflight.min(receive_maximum));
                                connected = true;
                            }
                        }
                    }
                    if connected {
                        client.read(&mut session);
                    } else {
                        prop_assert_eq!(session.pending_bytes(), 0, "nothing is sent offline");
                    }
                    // A resumption with a smaller receive maximum resends what is still in
                    // flight [MQTT-4.4.0-1] only as far as the new window; the rest is held, and
                    // nothing new is sent while anything is held.
                    let out = session.inflight.iter().filter(|entry| !entry.held).count();
                    prop_assert!(out <= window, "window respected: {} out of {}", out, window);
                    prop_assert!(
                        session.inflight_len() <= window || client.first_sent.len() == first_sent,
                        "nothing new sent beyond the window"
                    );
                }
                // The client comes back and acknowledges everything: every accepted QoS 1/2
                // message reaches it, and first transmissions keep the order of delivery.
                if !connected {
                    session = session.take_state();
                    session.handle_resumed(Protocol::V311, ClientLimits::default());
                    client.read(&mut session);
                }
                for _ in 0..10_000 {
                    if client.owed.is_empty() {
                        break;
                    }
                    client.ack_oldest(&mut session);
                    client.read(&mut session);
                }
                prop_assert_eq!(session.inflight_len() + session.queued_len(), 0);
                for n in &accepted {
                    prop_assert!(client.received.contains(n), "message {} lost", n);
                }
                let mut sorted = client.first_sent.clone();
                sorted.sort_unstable();
                prop_assert_eq!(&client.first_sent, &sorted, "first transmissions in order");
            }
        }
    }
}
