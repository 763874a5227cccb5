"""An SMPP 3.4 SMS centre for tocsin's tests, on smpp34 (PyPI), an implementation the
project did not write. It accepts binds, answers every submit_sm, writes each one it
accepted as a JSON line to --out, and sends a delivery receipt (deliver_sm, esm_class 0x04)
for every accepted submit that asks for one. Faults by destination prefix:
  999…  ESME_RINVDSTADR (invalid destination)
  888…  ESME_RTHROTTLED for the first two tries of each number, then accepted
  777…  ESME_RMSGQFUL, always
Usage: python smsc.py PORT OUT.jsonl
"""

import asyncio
import json
import sys

import smpp34


async def receipt(esme, ev, message_id):
    text = (
        f"id:{message_id} sub:001 dlvrd:001 submit date:2611290400 "
        f"done date:2611290400 stat:DELIVRD err:000 text:"
    ).encode()
    try:
        await esme.deliver_sm(
            ev.source_addr, text, source_addr=ev.destination_addr, esm_class=0x04
        )
    except Exception as e:  # the ESME may have unbound meanwhile
        print(f"receipt not sent: {e}", file=sys.stderr, flush=True)


async def main(port, out_path):
    server = smpp34.Server(host="127.0.0.1", port=port, system_id="PYSMSC")
    await server.start()
    print(f"listening on {port}", flush=True)
    sessions = {}
    tries = {}
    count = 0
    with open(out_path, "a", encoding="utf-8") as out:
        while True:
            ev = await server.next()
            if isinstance(ev, smpp34.Esme):
                sessions[ev.session_id] = ev
            elif isinstance(ev, smpp34.Unbound):
                sessions.pop(ev.session_id, None)
            elif isinstance(ev, smpp34.SubmitSmEvent):
                dest = ev.destination_addr
                if dest.startswith("999"):
                    ev.reject(smpp34.ESME_RINVDSTADR)
                    continue
                if dest.startswith("777"):
                    ev.reject(smpp34.ESME_RMSGQFUL)
                    continue
                if dest.startswith("888"):
                    tries[dest] = tries.get(dest, 0) + 1
                    if tries[dest] <= 2:
                        ev.reject(smpp34.ESME_RTHROTTLED)
                        continue
                count += 1
                message_id = f"py{count}"
                # Recorded before the answer, so a test reading the file after its
                # submit_sm_resp finds the line.
                out.write(
                    json.dumps(
                        {
                            "session": ev.session_id,
                            "source": ev.source_addr,
                            "destination": dest,
                            "dest_addr_ton": ev.dest_addr_ton,
                            "esm_class": ev.esm_class,
                            "data_coding": ev.data_coding,
                            "registered_delivery": ev.registered_delivery,
                            "short_message": ev.short_message.hex(),
                        }
                    )
                    + "\n"
                )
                out.flush()
                ev.accept(message_id)
                esme = sessions.get(ev.session_id)
                if ev.registered_delivery & 1 and esme is not None and esme.can_receive:
                    asyncio.ensure_future(receipt(esme, ev, message_id))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
