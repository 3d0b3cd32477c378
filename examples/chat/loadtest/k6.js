// The chat load scenario of the articles wshub grew from, for k6:
//
//	go run ./examples/chat -addr 127.0.0.1:8080 &
//	k6 run examples/chat/loadtest/k6.js
//
// Ramps to 2,000 virtual users over 20 s; each connects, sets its name, says
// something every 1 to 3 s, sends LEAVE after 10 s and closes 3 s later.
// It checks that every connection is upgraded (101) and that every server
// message is a JSON object with an "event" field, and fails otherwise.
import ws from 'k6/ws';
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';

const url = __ENV.URL || 'ws://127.0.0.1:8080/ws';
const goodMessages = new Rate('chat_messages_are_events');
const chatMessages = new Counter('chat_msgs_received');

export const options = {
  stages: [
    { duration: '20s', target: 2000 },
    { duration: '15s', target: 2000 },
  ],
  thresholds: {
    checks: ['rate==1'],                 // every upgrade answered 101
    chat_messages_are_events: ['rate==1'],
  },
};

export default function () {
  const res = ws.connect(url, null, function (socket) {
    socket.on('open', () => {
      socket.send(JSON.stringify({ event: 'SET_NAME', new_name: `vu${__VU}_${__ITER}` }));
      const say = () => {
        socket.send(JSON.stringify({ event: 'SAY', message: `hello from ${__VU}` }));
        socket.setTimeout(say, 1000 + Math.random() * 2000);
      };
      socket.setTimeout(say, 1000 + Math.random() * 2000);
      socket.setTimeout(() => socket.send(JSON.stringify({ event: 'LEAVE' })), 10000);
      socket.setTimeout(() => socket.close(), 13000);
    });
    socket.on('message', (data) => {
      let ok = false;
      try {
        const e = JSON.parse(data);
        ok = e !== null && typeof e === 'object' && !Array.isArray(e) && typeof e.event === 'string';
        if (ok && e.event === 'CHAT_MSG') chatMessages.add(1);
      } catch (_) {}
      goodMessages.add(ok);
    });
  });
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
}
