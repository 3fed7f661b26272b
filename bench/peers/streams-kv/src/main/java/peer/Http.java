package peer;

import com.sun.net.httpserver.HttpExchange;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/** Writing answers: JSON bodies, and error bodies shaped like the store's ({"code", "detail"}). */
final class Http {
    private Http() {
    }

    static void send(HttpExchange exchange, int status, String json) throws IOException {
        send(exchange, status, json.getBytes(StandardCharsets.UTF_8));
    }

    static void send(HttpExchange exchange, int status, byte[] json) throws IOException {
        exchange.getResponseHeaders().set("Content-Type", "application/json");
        exchange.sendResponseHeaders(status, json.length == 0 ? -1 : json.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(json);
        }
    }

    static void error(HttpExchange exchange, int status, String code, String detail) throws IOException {
        send(exchange, status, "{\"code\":\"" + code + "\",\"detail\":\"" + detail.replace("\"", "'") + "\"}");
    }

    static void redirect(HttpExchange exchange, String location) throws IOException {
        exchange.getResponseHeaders().set("Location", location);
        exchange.sendResponseHeaders(307, -1);
        exchange.close();
    }
}
