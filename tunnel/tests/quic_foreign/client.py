"""A QUIC client no one in Causeway wrote (aioquic), used by gateway/tests/hostile_quic.rs.

Connects to a gateway tunnel with ALPN causeway/1 and the given client certificate
chain and key, opens one bidirectional stream, sends the stream header given in hex,
and reports on stdout:
  OPENED <n>           the gateway answered on the stream (n bytes)
  REFUSED <reason>     the connection was closed or never completed
Exit status 0 either way; 2 on a usage error.
"""

import asyncio
import ssl
import sys

from cryptography import x509

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived

WAIT_SECONDS = 5.0


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = asyncio.Queue()

    def quic_event_received(self, event):
        self.events.put_nowait(event)


async def run(host, port, cert, key, header):
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=["causeway/1"],
        verify_mode=ssl.CERT_NONE,
        server_name="causeway-gateway",
    )
    config.load_cert_chain(cert, key)
    # Some aioquic releases keep only the leaf of a PEM chain; send the cluster issuer
    # too, as a real peer gateway does.
    with open(cert, "rb") as f:
        config.certificate_chain = x509.load_pem_x509_certificates(f.read())[1:]
    try:
        async with connect(
            host, port, configuration=config, create_protocol=Client
        ) as client:
            stream = client._quic.get_next_available_stream_id()
            client._quic.send_stream_data(stream, header, end_stream=False)
            client.transmit()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_SECONDS
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return "REFUSED no answer within %.0f s" % WAIT_SECONDS
                event = await asyncio.wait_for(client.events.get(), left)
                if isinstance(event, StreamDataReceived) and event.data:
                    return "OPENED %d" % len(event.data)
                if isinstance(event, ConnectionTerminated):
                    return "REFUSED error_code=0x%x reason=%r" % (
                        event.error_code,
                        event.reason_phrase,
                    )
    except (ConnectionError, asyncio.TimeoutError, OSError) as e:
        return "REFUSED %s: %s" % (type(e).__name__, e)


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, cert, key, header_hex = sys.argv[1:]
    print(asyncio.run(run(host, int(port), cert, key, bytes.fromhex(header_hex))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
