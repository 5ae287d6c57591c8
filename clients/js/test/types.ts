// Compiled by `tsc` in the test run: the declarations must describe this use.
import { connect, CLOSE, SwitchboardError, type Message } from '../switchboard.js';
import { encode, decode } from '../msgpack.js';

const client = connect('ws://127.0.0.1:8080/ws', { protocol: 'msgpack', getToken: async () => 'token' });
client.on('disconnected', ({ code }) => { if (code === CLOSE.TOKEN_EXPIRED) console.log('expired'); });
client.on('joined', (e) => console.log(e.room, e.recovered ?? 'first join'));
const room = client.join('sensors/+/temp', {
  rewind: 10,
  onState: (state, { recovered }) => console.log(state.length, recovered),
  onMessage: (m: Message, { replayed }) => console.log(m.topic, m.payload, m.offset, replayed),
  onPresence: (e) => { if (e.type === 'device') console.log(e.client_id, e.online, e.reason); },
});
room.ready.then(({ epoch, offset }) => console.log(epoch, offset));
client.publish('devices/d1/cmd', { on: true }, { qos: 1 }).catch((e: SwitchboardError) => console.log(e.code));
const members: Promise<string[]> = room.presence().then((m) => m.map((x) => x.user ?? x.session));
const bytes: Uint8Array = encode({ a: 1 });
console.log(decode(bytes), members, client.state satisfies 'connecting' | 'connected' | 'disconnected' | 'closed');
// @ts-expect-error qos 2 is not offered to browsers
client.publish('t', 1, { qos: 2 });
room.leave();
